"""The launch identity: what makes two launches the same run (render.propose.normalize,
`Experiment.launch_identity`, `naming.run_id`), and the rules built on it: duplicates
and edits after a run compare what LLaMA-Factory reads, not how the YAML spells it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lint_harness import make_workspace, record_run

from render.manifests.runspec import RunSpec
from render.propose.experiment import Experiment, Workspace, canonical_hash, image_identity
from render.propose.lint import lint
from render.propose.normalize import normalize_train

LORA = "experiments/alpaca_en/llama-3.1-8b/sft_lora_r8_lr1e-4_v1.yaml"
FOLDER = "experiments/alpaca_en"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_workspace(tmp_path)


def load(root: Path, path: str = LORA) -> Experiment:
    exp, findings = Workspace(root).load(root / path)
    assert exp is not None and not findings
    return exp


def edit(root: Path, path: str, old: str, new: str) -> None:
    text = (root / path).read_text()
    assert old in text, (path, old)
    (root / path).write_text(text.replace(old, new, 1))


# -- normalization (item 9) --------------------------------------------------------------

@pytest.mark.parametrize(("a", "b"), [
    ({"num_train_epochs": 3}, {"num_train_epochs": 3.0}),
    ({"learning_rate": 1}, {"learning_rate": 1.0}),
    ({"lora_rank": 8.0}, {"lora_rank": 8}),
    ({"lora_rank": 16, "lora_target": "all"}, {"lora_rank": 16}),  # a default written out
    ({"num_train_epochs": 3.0}, {}),  # LLaMA-Factory's default is 3.0
    ({"dataset": "alpaca_en,"}, {"dataset": "alpaca_en"}),
    ({"dataset": " alpaca_en , b"}, {"dataset": ["alpaca_en", "b"]}),
    ({"lora_target": "q_proj, v_proj"}, {"lora_target": ["q_proj", "v_proj"]}),
    ({"bf16": False}, {}),
    ({"max_samples": None}, {}),
])
def test_configs_llamafactory_reads_the_same_normalize_the_same(
        a: dict[str, object], b: dict[str, object]) -> None:
    assert canonical_hash(normalize_train(a)) == canonical_hash(normalize_train(b))


@pytest.mark.parametrize(("a", "b"), [
    ({"num_train_epochs": 3.0}, {"num_train_epochs": 3.5}),
    ({"bf16": True}, {}),
    ({"lora_rank": True}, {"lora_rank": 1}),  # a bool is not the integer 1
    ({"dataset": "a,b"}, {"dataset": "b,a"}),  # the order is the mixing order
    ({"learning_rate": "1e-4"}, {"learning_rate": 1e-4}),  # a string stays a string
    ({"unknown_key": 1}, {"unknown_key": 1.0}),  # unknown keys as written (lint says)
])
def test_configs_that_differ_stay_different(a: dict[str, object], b: dict[str, object]) -> None:
    assert canonical_hash(normalize_train(a)) != canonical_hash(normalize_train(b))


# -- the launch identity (item 1) --------------------------------------------------------

NOT_IDENTITY: list[tuple[str, str, str, str]] = [
    # (what, file, old, new): none of these is a new run
    ("description typo", LORA, "the baseline", "teh baseline"),
    ("owner", LORA, "owner: jk", "owner: someone-else"),
    ("tags", LORA, "tags: [lora, baseline]", "tags: [lora, baseline, sweep]"),
    ("tags in the dataset's _defaults.yaml", f"{FOLDER}/_defaults.yaml", "train:\n",
     "metadata:\n  tags: [alpaca]\ntrain:\n"),
    ("dataset.yaml description", f"{FOLDER}/dataset.yaml", "cleaned.", "cleaned up."),
    ("launch.priority", LORA, "  max_restarts: 2", "  max_restarts: 2\n  priority: low"),
    ("launch.queue", LORA, "  max_restarts: 2", "  max_restarts: 2\n  queue: production"),
    ("launch.time_limit", LORA, "time_limit: 6h", "time_limit: 8h"),
    ("launch.max_restarts", LORA, "max_restarts: 2", "max_restarts: 3"),
    ("a YAML comment", LORA, "# adapter size", "# the adapter's size"),
    ("3 -> 3.0", LORA, "num_train_epochs: 3.0", "num_train_epochs: 3"),
    ("a default written out", LORA, "lora_target: all", "lora_target: all\n  bf16: true\n"
     "  seed: 42"),
    ("a trailing comma in dataset", f"{FOLDER}/_defaults.yaml", "dataset: alpaca_en",
     "dataset: 'alpaca_en,'"),
]

IDENTITY: list[tuple[str, str, str, str]] = [
    # (what, file, old, new): each is a different run
    ("learning rate", LORA, "learning_rate: 1.0e-4", "learning_rate: 2.0e-4"),
    ("lora rank", LORA, "lora_rank: 8 ", "lora_rank: 16"),
    ("a default changed", LORA, "lr_scheduler_type: cosine", "lr_scheduler_type: linear"),
    ("the image", LORA, "  max_restarts: 2", "  max_restarts: 2\n  image: registry.example/lf:1"),
    ("nodes", LORA, "nodes: 1", "nodes: 2"),
    ("gpus per node", LORA, "gpus_per_node: 8 ", "gpus_per_node: 4 "),
    ("gpu type", f"{FOLDER}/llama-3.1-8b/_defaults.yaml", "gpu_type: h100-80gb",
     "gpu_type: a100-80gb"),
    ("storage profile", LORA, "  max_restarts: 2", "  max_restarts: 2\n  storage: pvc"),
    ("secret names", f"{FOLDER}/llama-3.1-8b/_defaults.yaml", "hf-token/token",
     "hf-token-2/token"),
    ("data revision", f"{FOLDER}/dataset.yaml", '"2024-05-01"', '"2024-06-01"'),
    ("a dataset_info entry", f"{FOLDER}/dataset.yaml", "formatting: alpaca",
     "formatting: alpaca\n    num_samples: 52000"),
    ("a train default in _defaults.yaml", f"{FOLDER}/_defaults.yaml", "cutoff_len: 2048",
     "cutoff_len: 4096"),
    ("report_to written as none (the profile's default is mlflow)", LORA,
     "lr_scheduler_type: cosine", "lr_scheduler_type: cosine\n  report_to: none"),
]


@pytest.mark.parametrize(("what", "path", "old", "new"), NOT_IDENTITY,
                         ids=[c[0] for c in NOT_IDENTITY])
def test_metadata_and_spelling_are_not_the_identity(root: Path, what: str, path: str,
                                                    old: str, new: str) -> None:
    before = load(root)
    edit(root, path, old, new)
    after = load(root)
    assert after.config_hash == before.config_hash, what
    assert RunSpec(after, "b" * 40).run_id == RunSpec(before, "a" * 40).run_id, what


@pytest.mark.parametrize(("what", "path", "old", "new"), IDENTITY, ids=[c[0] for c in IDENTITY])
def test_what_runs_is_the_identity(root: Path, what: str, path: str, old: str,
                                   new: str) -> None:
    before = load(root)
    edit(root, path, old, new)
    after = load(root)
    assert after.config_hash != before.config_hash, what
    assert RunSpec(after, "a" * 40).run_id != RunSpec(before, "a" * 40).run_id, what


def test_deepspeed_content_not_its_file_name(root: Path) -> None:
    full = "experiments/alpaca_en/llama-3.1-8b/sft_full_ds3_lr1e-5_v1.yaml"
    before = load(root, full)
    ds = root / "experiments/_deepspeed"
    (ds / "ds_z3_copy.json").write_text((ds / "ds_z3.json").read_text())
    edit(root, full, "ds_z3.json", "ds_z3_copy.json")
    assert load(root, full).config_hash == before.config_hash
    (ds / "ds_z3_copy.json").write_text((ds / "ds_z3.json").read_text().replace(
        '"stage": 3', '"stage": 2'))
    assert load(root, full).config_hash != before.config_hash


def test_rerun_is_a_new_run_of_the_same_config(root: Path) -> None:
    before = load(root)
    edit(root, LORA, "  max_restarts: 2", "  max_restarts: 2\n  rerun: 1")
    after = load(root)
    assert after.config_hash == before.config_hash  # the same config ...
    ids = {RunSpec(before, "a" * 40).run_id, RunSpec(after, "a" * 40).run_id}
    edit(root, LORA, "rerun: 1", "rerun: 2")
    ids.add(RunSpec(load(root), "a" * 40).run_id)
    assert len(ids) == 3  # ... three runs
    assert RunSpec(after, "a" * 40).identity().rerun == 1


def test_a_pinned_image_is_its_digest(root: Path) -> None:
    digest = "sha256:" + "a" * 64
    edit(root, LORA, "  max_restarts: 2", f"  max_restarts: 2\n  image: r.example/lf:1@{digest}")
    before = load(root)
    edit(root, LORA, "r.example/lf:1@", "mirror.example/llm/lf:renamed@")
    assert load(root).config_hash == before.config_hash
    edit(root, LORA, "a" * 64, "b" * 64)
    assert load(root).config_hash != before.config_hash


def test_the_commit_is_lineage_not_identity(root: Path) -> None:
    exp = load(root)
    a, b = RunSpec(exp, "a" * 40), RunSpec(exp, "b" * 40)
    assert a.run_id == b.run_id and a.jobset == b.jobset
    assert (a.identity().git_sha, b.identity().git_sha) == ("a" * 40, "b" * 40)


def test_image_identity_is_the_digest_when_pinned() -> None:
    digest = "sha256:" + "0" * 64
    assert image_identity(f"r.example/a/lf:1@{digest}") == digest
    assert image_identity(f"other.example/lf@{digest}") == digest
    assert image_identity("r.example/a/lf:1") == "r.example/a/lf:1"


# -- the rules on it (items 1, 2, 9) -----------------------------------------------------

def ran(root: Path, path: str = LORA, **fields: object) -> None:
    exp = load(root, path)
    spec = RunSpec(exp, "0" * 40)
    record_run(root, path, spec.run_id, exp.config_hash, mode="cluster",
               image=exp.launch.image, **fields)


@pytest.mark.parametrize(("what", "path", "old", "new"), NOT_IDENTITY,
                         ids=[c[0] for c in NOT_IDENTITY])
def test_no_metadata_change_is_an_edit_after_a_run(root: Path, what: str, path: str,
                                                   old: str, new: str) -> None:
    ran(root)
    edit(root, path, old, new)
    assert [f.format() for f in lint(Workspace(root), [root / LORA]).findings] == [], what


def test_an_image_change_after_a_run_is_an_edit(root: Path) -> None:
    ran(root)
    edit(root, LORA, "  max_restarts: 2",
         "  max_restarts: 2\n  image: us-docker.pkg.dev/my-project/llm/lf:2")
    (finding,) = lint(Workspace(root), [root / LORA]).findings
    assert finding.rule == "history" and "different launch identity" in finding.message
    assert "its launch.image changed since it ran" in finding.hint
    assert "pin `launch.image: us-docker.pkg.dev/my-project/llm/llamafactory" in finding.hint


def test_a_profile_default_image_bump_says_how_to_keep_the_run(root: Path) -> None:
    ran(root)
    profile = root / "k8s-base/cluster-profile.yaml"
    profile.write_text(profile.read_text().replace("0.9.5-cu124", "0.9.6-cu124"))
    findings = [f for f in lint(Workspace(root), [root / LORA]).findings
                if f.rule == "history"]
    assert len(findings) == 1
    assert "the cluster profile's default image changed since it ran" in findings[0].hint
    assert "0.9.5-cu124 -> us-docker.pkg.dev/my-project/llm/llamafactory:0.9.6" in \
        findings[0].hint


def test_a_rerun_of_a_config_that_ran_is_no_edit(root: Path) -> None:
    ran(root)
    edit(root, LORA, "  max_restarts: 2", "  max_restarts: 2\n  rerun: 1")
    assert lint(Workspace(root), [root / LORA]).ok


DUPLICATES: list[Callable[[str], str]] = [
    lambda t: t.replace("num_train_epochs: 3.0", "num_train_epochs: 3"),
    lambda t: t.replace("lora_target: all", "lora_target: all\n  seed: 42"),
    lambda t: t.replace("stage: sft", "stage: sft\n  dataset: 'alpaca_en,'"),
    lambda t: t.replace("the baseline for the adapter sweep", "a copy").replace(
        "  max_restarts: 2", "  max_restarts: 2\n  priority: low"),
]


@pytest.mark.parametrize("change", DUPLICATES, ids=["3 vs 3.0", "default written out",
                                                    "trailing comma", "metadata only"])
def test_duplicates_compare_what_llamafactory_reads(root: Path,
                                                    change: Callable[[str], str]) -> None:
    src = root / LORA
    copy = src.with_name("sft_lora_copy_v1.yaml")
    copy.write_text(change(src.read_text()))
    findings = lint(Workspace(root), [copy]).findings
    assert [f.rule for f in findings] == ["duplicates"], [f.format() for f in findings]


def test_rerun_in_the_schema_is_a_small_integer(root: Path) -> None:
    edit(root, LORA, "  max_restarts: 2", "  max_restarts: 2\n  rerun: -1")
    findings = lint(Workspace(root), [root / LORA]).findings
    assert any(f.path == "$.launch.rerun" for f in findings), [f.format() for f in findings]
