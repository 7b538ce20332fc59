"""An imported file is untrusted: a hostile key or value never becomes YAML structure, a
path or a command; a huge, deep or alias-bombed file fails fast with a clear message;
secrets are never copied."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from lint_harness import make_workspace

from render.cli import main
from render.errors import FatalError
from render.propose import untrusted
from render.propose.board import BoardError
from render.propose.experiment import Workspace
from render.propose.importer import Options, import_config
from render.propose.importsrc import read_source

DATASET_INFO = Path(__file__).resolve().parent / "data" / "llamafactory-0.9.5" / "data" / \
    "dataset_info.json"
BASE = {"model_name_or_path": "Qwen/Qwen3-4B-Instruct-2507", "stage": "sft", "do_train": True,
        "finetuning_type": "lora", "dataset": "alpaca_en_demo", "template": "qwen3",
        "bf16": True}


def _import(root: Path, tmp: Path, config: dict[str, object] | str, **opts: object):  # type: ignore[no-untyped-def]
    src = tmp / "in.yaml"
    src.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    ws = Workspace(root)
    settings: dict[str, object] = {"owner": "team", "dataset_info": DATASET_INFO,
                                   "data_uri": "gs://b-k/d/", "data_revision": "1", **opts}
    options = Options(**settings)  # type: ignore[arg-type]
    return import_config(ws, read_source(str(src), ws), options)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_workspace(tmp_path)


def test_alias_bomb_fails_fast(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]"
              for i in range(1, 30)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    with pytest.raises(FatalError, match="aliases"):
        untrusted.load_yaml(bomb, "a config")
    assert time.monotonic() - start < 5


def test_deep_and_huge_files_fail_fast(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 200 + "]" * 200 + "\n")
    with pytest.raises(FatalError, match="nested deeper than 32"):
        untrusted.load_yaml(deep, "a config")
    deep.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    start = time.monotonic()
    with pytest.raises(FatalError, match="nest"):
        untrusted.load_yaml(deep, "a config")
    assert time.monotonic() - start < 5
    huge = tmp_path / "huge.yaml"
    huge.write_text("a: " + "x" * (3 * 1024 * 1024) + "\n")
    with pytest.raises(FatalError, match="too large"):
        untrusted.load_yaml(huge, "a config")
    many = tmp_path / "many.yaml"
    many.write_text("a: [" + "1," * 300_000 + "1]\n")
    with pytest.raises(FatalError, match="more than"):
        untrusted.load_yaml(many, "a config")
    deep_json = tmp_path / "deep.json"
    deep_json.write_text("[" * 50_000 + "]" * 50_000)
    with pytest.raises(FatalError, match="nested"):
        untrusted.load_json(deep_json, "a dataset_info.json")
    tagged = tmp_path / "tag.yaml"
    tagged.write_text("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(FatalError, match="tag"):
        untrusted.load_yaml(tagged, "a config")


def test_hostile_keys_and_values_stay_data(root: Path, tmp_path: Path) -> None:
    evil_value = "x\ntrain: {output_dir: /etc}\n# "
    evil_key = "evil\nmetadata: {owner: root}"
    config = {**BASE, "run_name": evil_value, evil_key: "1", "logging_dir": "$(rm -rf ~)"}
    res = _import(root, tmp_path, config, keep=True, drop=())
    assert [d.key for d in res.blocking] == [f"unknown-key:{evil_key}"]
    written = yaml.safe_load((root / res.path).read_text())
    assert set(written) == {"metadata", "launch", "train"}
    assert written["metadata"]["owner"] == "team"
    assert written["train"]["run_name"] == evil_value  # a string, as it came
    assert written["train"][evil_key] == "1"
    assert written["train"]["logging_dir"] == "$(rm -rf ~)"
    assert "output_dir" not in written["train"]


@pytest.mark.parametrize(("dataset", "model"), [
    ("../../etc", "Qwen/Qwen3-4B-Instruct-2507"),
    ("Alpaca", "Qwen/Qwen3-4B-Instruct-2507"),
    ("alpaca_en_demo", "evil/.."),
    ("alpaca_en_demo", "../../.."),
])
def test_names_never_become_paths(root: Path, tmp_path: Path, dataset: str, model: str) -> None:
    before = sorted(p for p in root.rglob("*"))
    res = _import(root, tmp_path, {**BASE, "dataset": dataset, "model_name_or_path": model})
    assert res.path == "" and res.blocking
    assert res.blocking[0].key in ("dataset-name", "model-name")
    assert sorted(p for p in root.rglob("*")) == before
    assert not (tmp_path / "etc").exists()


def test_dataset_info_entries_cannot_leave_the_data_folder(root: Path, tmp_path: Path) -> None:
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"stolen": {"file_name": "../../../etc/shadow"}}))
    res = _import(root, tmp_path, {**BASE, "dataset": "stolen"}, dataset_info=info)
    assert [d.key for d in res.blocking] == ["dataset-entry:stolen"]
    assert "leaves the data folder" in res.blocking[0].text
    assert not (root / "experiments/stolen").exists()


def test_deepspeed_reads_only_deepspeed_json(root: Path, tmp_path: Path) -> None:
    (tmp_path / "not_ds.json").write_text(json.dumps({"private_key": "x"}))
    with pytest.raises(FatalError, match="not a DeepSpeed config"):
        _import(root, tmp_path, {**BASE, "deepspeed": "not_ds.json"})
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    with pytest.raises(FatalError, match=r"a \.json file"):
        _import(root, tmp_path, {**BASE, "deepspeed": "passwd"})
    res = _import(root, tmp_path, {**BASE, "deepspeed": "missing/ds.json"})
    assert [d.key for d in res.blocking] == ["deepspeed"]
    assert not list((root / "experiments/_deepspeed").glob("not_ds*"))


def test_secrets_are_not_copied(root: Path, tmp_path: Path) -> None:
    token = "hf_" + "a1B2c3D4e5" * 4
    config = {**BASE, "hf_hub_token": token, "run_name": f"run-{token}",
              "use_swanlab": True, "swanlab_api_key": "sk-live-123456"}
    profile = root / "k8s-base/cluster-profile.yaml"
    shipped = profile.read_text()
    profile.write_text(shipped.replace("allowed_secrets: [hf-token, wandb-api-key, "
                                       "swanlab-api-key]", "allowed_secrets: [hf-token]"))
    res = _import(root, tmp_path, config)
    # a profile whose limits allow hf-token only: the import stops at the SwanLab Secret
    assert [d.text for d in res.blocking if "swanlab-api-key" in d.text and
            "is not one runs may read" in d.text] and not res.written
    profile.write_text(shipped)
    res = _import(root, tmp_path, config)
    assert res.clean, [d.text for d in res.blocking]
    text = (root / res.path).read_text()
    assert token not in text and "sk-live-123456" not in text
    written = yaml.safe_load(text)
    assert written["launch"]["env_from_secrets"] == {
        "HF_TOKEN": "hf-token/value", "SWANLAB_API_KEY": "swanlab-api-key/value"}
    assert "train.run_name was left out because its value held a Hugging Face token" in \
        " ".join(d.text for d in res.decisions)
    assert not {"hf_hub_token", "run_name", "swanlab_api_key"} & set(written["train"])
    assert all(token not in line and "sk-live" not in line for line in res.lines)


def test_board_files_are_checked_like_the_board_would(tmp_path: Path) -> None:
    ws_root = make_workspace(tmp_path)
    ws = Workspace(ws_root)
    bad = tmp_path / "board.yaml"
    bad.write_text(yaml.safe_dump({"top.model_name": "Qwen3-4B-Instruct-2507",
                                   "train.learning_rate": ["1e-4"], "train.bogus": 1}))
    with pytest.raises(BoardError, match="train.learning_rate: expected text") as err:
        read_source(str(bad), ws)
    assert "'train.bogus' is not a field of the Board's Train tab" in str(err.value)
    custom = tmp_path / "custom.yaml"
    custom.write_text(yaml.safe_dump({"top.model_name": "Custom",
                                      "train.dataset": ["alpaca_en_demo"]}))
    with pytest.raises(FatalError, match="pass --model"):
        read_source(str(custom), ws)


def test_cli_never_shows_a_traceback(root: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    for source in ("run:../../etc", "run:nope", str(tmp_path / "missing.yaml")):
        assert main(["--repo", str(root), "import", source]) == 1
        err = capsys.readouterr().err
        assert err.startswith("ftops: error: ") and "Traceback" not in err
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert main(["--repo", str(root), "import", str(tmp_path / "list.yaml")]) == 1
    assert "expected a mapping" in capsys.readouterr().err
