"""The folders agree with the config: dataset and model, and the dataset is registered."""

from __future__ import annotations

from collections.abc import Iterator

from render.errors import Finding
from render.propose.experiment import DATASET_NAME, Experiment, dataset_names, model_slug
from render.propose.rules.context import Context


def check(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    train = exp.train
    names = dataset_names(train.get("dataset"))
    folder = f"experiments/{exp.dataset}"
    if exp.dataset_doc is None:
        yield exp.finding((), f"{folder}/{DATASET_NAME} is missing",
                          f"register the dataset in {folder}/{DATASET_NAME} "
                          "(description, source.uri, source.revision, dataset_info)",
                          "consistency")
    if "dataset" in train and names and exp.dataset not in names:
        yield exp.finding(("train", "dataset"),
                          f"train.dataset {train['dataset']!r} does not include the folder's "
                          f"dataset {exp.dataset!r}",
                          f"move the file under experiments/{names[0]}/ or set "
                          f"dataset: {exp.dataset}", "consistency")
    info = exp.registration.get("dataset_info")
    if isinstance(info, dict) and exp.dataset_doc is not None:
        for key in ("dataset", "eval_dataset"):
            for name in dataset_names(train.get(key)):
                if name not in info:
                    yield exp.finding(("train", key), f"{key.replace('_', ' ')} {name!r} is "
                                      "not registered",
                                      f"add it under dataset_info: in {folder}/{DATASET_NAME}",
                                      "consistency")
    model = train.get("model_name_or_path")
    if isinstance(model, str) and model and model_slug(model) != exp.model:
        yield exp.finding(("train", "model_name_or_path"),
                          f"model {model!r} belongs in folder {model_slug(model)!r}, "
                          f"not {exp.model!r}",
                          f"move the file to experiments/{exp.dataset}/{model_slug(model)}/",
                          "consistency")
