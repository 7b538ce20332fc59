"""Property tests: mutate valid experiments; lint never crashes, and never passes a file
that a mutation made invalid."""

from __future__ import annotations

import copy
import shutil
import string
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lint_harness import REPO

from render.propose.experiment import Workspace
from render.propose.lint import lint
from render.propose.schema import load_schema

TARGET = "experiments/demo/tiny-llama/sft_lora_v1.yaml"
VALID_TEXT = (REPO / TARGET).read_text()
VALID = yaml.safe_load(VALID_TEXT)
LF_PROPS = load_schema("llamafactory-0.9.5.schema.json")["properties"]
TYPED = sorted(k for k, v in LF_PROPS.items() if isinstance(v.get("type"), str)
               and v["type"] in ("number", "integer", "boolean"))
SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _workspace(tmp: Path) -> Path:
    root = tmp / "repo"
    if not root.exists():
        shutil.copytree(REPO / "k8s-base", root / "k8s-base")
        (root / "experiments/demo/tiny-llama").mkdir(parents=True)
        shutil.copy(REPO / "experiments/demo/dataset.yaml", root / "experiments/demo/")
        (root / "outputs-index").mkdir()
    return root


def _lint_text(root: Path, text: str) -> list[str]:
    path = root / TARGET
    path.write_text(text, encoding="utf-8")
    result = lint(Workspace(root), [path])  # must not raise, whatever the text
    return [f.format() for f in result.findings]


def test_the_unmutated_experiment_is_valid(tmp_path: Path) -> None:
    assert _lint_text(_workspace(tmp_path), VALID_TEXT) == []


@SETTINGS
@given(pos=st.integers(min_value=0, max_value=len(VALID_TEXT) - 1),
       junk=st.text(alphabet=string.printable + "\u00e9\u2028\x00", min_size=1, max_size=6))
def test_arbitrary_text_edits_never_crash(tmp_path: Path, pos: int, junk: str) -> None:
    root = _workspace(tmp_path)
    _lint_text(root, VALID_TEXT[:pos] + junk + VALID_TEXT[pos + 1:])


def _wrong_value(kind: str) -> st.SearchStrategy[object]:
    if kind == "boolean":
        return st.one_of(st.integers(), st.text(min_size=1), st.lists(st.integers(), max_size=2))
    return st.one_of(st.text(min_size=1).filter(lambda s: not _is_number(s)),
                     st.booleans(), st.lists(st.integers(), max_size=2))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@st.composite
def invalid_experiments(draw: st.DrawFn) -> dict[str, object]:
    doc = copy.deepcopy(VALID)
    kind = draw(st.sampled_from(["wrong_type", "unknown_key", "drop_required", "bad_launch",
                                 "owned_key", "bad_section"]))
    if kind == "wrong_type":
        key = draw(st.sampled_from(TYPED))
        doc["train"][key] = draw(_wrong_value(LF_PROPS[key]["type"]))
    elif kind == "unknown_key":
        key = draw(st.text(alphabet=string.ascii_lowercase + "_", min_size=3, max_size=20)
                   .filter(lambda k: k not in LF_PROPS))
        doc["train"][key] = draw(st.integers())
    elif kind == "drop_required":
        section, key = draw(st.sampled_from([("metadata", "owner"), ("launch", "nodes"),
                                             ("launch", "gpu_type"), (None, "train")]))
        if section is None:
            del doc[key]
        else:
            del doc[section][key]
    elif kind == "bad_launch":
        field = draw(st.sampled_from(["nodes", "gpus_per_node", "max_restarts"]))
        doc["launch"][field] = draw(st.one_of(st.integers(max_value=-1),
                                              st.integers(min_value=100)))
    elif kind == "owned_key":
        doc["train"][draw(st.sampled_from(["output_dir", "dataset_dir"]))] = "/tmp/x"
    else:
        doc[draw(st.sampled_from(["metadata", "launch", "train"]))] = draw(
            st.one_of(st.integers(), st.text(), st.lists(st.integers(), max_size=2)))
    return doc


@SETTINGS
@given(doc=invalid_experiments())
def test_invalid_mutations_are_always_reported(tmp_path: Path, doc: dict[str, object]) -> None:
    root = _workspace(tmp_path)
    findings = _lint_text(root, yaml.safe_dump(doc, sort_keys=False))
    assert findings, yaml.safe_dump(doc)
    assert all(f.startswith(TARGET + ":") for f in findings)
