"""The index heals past bad records and cannot be forged (render.record.trust, publish,
reconcile), and no number in a record crashes a command that reads it.

Hostile inputs by class, each against a real bare git remote and file storage:

* bad run.json files in storage: reconcile names each one, lands every good one;
* bad records on staged refs: no publisher crashes; reconcile lands the good records of
  the set and moves the ref to refs/ftops/quarantine/;
* forged staged refs and forged run.json files: never land (checked against the
  `launched` entry on main and the run's own run.json);
* numbers no reader can use (a 400-digit integer, 1e999, NaN) in an index entry:
  `index check`, `index readme`, `plan`, publish and reconcile say so in one line.

Every test counts: tracebacks (an exception out of the command), wrongly accepted (a bad
or forged record that lands), lost (a good record that does not land)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from index_remote import FAST, entries, git, launch, make_remote, rec, show, stored

from render.cli import main
from render.record.publish import PENDING_PREFIX, QUARANTINE_PREFIX, publish, reconcile
from render.record.runrecord import Metrics, RunRecord
from render.record.trust import StorageVerifier, StoredRecord

ENTRY_DIR = "outputs-index/alpaca/llama-3.1-8b"
BIG = "1" + "0" * 399  # a 400-digit integer


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


def entry(remote: Path, run_id: str) -> RunRecord:
    return RunRecord.from_json(show(remote, f"{ENTRY_DIR}/sft__{run_id}.json"))


def refs(remote: Path, prefix: str) -> list[str]:
    out = git("--git-dir", str(remote), "for-each-ref", "--format=%(refname)", prefix)
    return out.split()


def stage(remote: Path, tmp_path: Path, records: list[Any], name: str,
          raw: str | None = None) -> str:
    """Push a staged set as anyone who can push a ref can (the publisher's format);
    `raw`: the JSON text of the set's records instead (numbers json.dumps would not
    write, such as 1e999 or 400 digits)."""
    work = tmp_path / f"stage-{name}"
    git("init", "--quiet", str(work))
    body = raw if raw is not None else json.dumps(records)
    (work / "pending.json").write_text(
        '{"format": "ftops-pending/1", "replace_equal": true, "records": ' + body + "}")
    git("add", "pending.json", cwd=work)
    git("commit", "--quiet", "-m", "pending", cwd=work)
    token = f"{len(list(tmp_path.glob('stage-*'))):016x}-{'ab' * 6}"
    ref = f"{PENDING_PREFIX}{token}"
    git("push", "--quiet", str(remote), f"HEAD:{ref}", cwd=work)
    return ref


def as_dict(r: RunRecord, **changes: Any) -> dict[str, Any]:
    return {**json.loads(r.to_json()), **changes}


# Records that are not records: what a broken or hostile writer can leave (JSON text).
BAD_RECORDS: dict[str, str] = {
    "a list": "[]",
    "a string": '"x"',
    "not JSON": "{not json",
    "empty": "",
    "nested 100000 deep": "[" * 100_000 + "]" * 100_000,
    "no run id": '{"experiment": "sft"}',
    "an experiment name of 200 characters": "EXPERIMENT_200",
    "a dataset of '..'": "DATASET_DOTDOT",
    "a 400-digit integer metric": "METRIC_BIG",
    "a 5000-digit integer metric": "METRIC_HUGE",
    "1e999 as a metric": "METRIC_INF",
    "-1e999 as the duration": "DURATION_NEG_INF",
    "NaN as a metric": "METRIC_NAN",
    "a 400-digit node count": "NODES_BIG",
    "a string node count": "NODES_STR",
    "a bool exit code": "EXIT_BOOL",
    "1e999 in loss_points": "POINTS_INF",
    "1e999 in hyperparameters": "HYPER_INF",
    "1e999 900 levels down in resolved_config": "RESOLVED_DEEP_INF",
    "metrics as a list": "METRICS_LIST",
    "an unknown status": "STATUS_BAD",
}


def bad_text(kind: str, good: RunRecord, run_id: str) -> str:
    """The text of the bad record `kind` (placeholders are built from `good`)."""
    base = as_dict(good, run_id=run_id)
    raw = BAD_RECORDS[kind]
    if not raw.isupper() or not raw.replace("_", "").isalnum():
        return raw
    deep: Any = 1e999
    for _ in range(900):
        deep = {"x": deep}
    variants: dict[str, dict[str, Any]] = {
        "EXPERIMENT_200": {"experiment": "e" * 200},
        "DATASET_DOTDOT": {"dataset": ".."},
        "METRIC_BIG": {"metrics": {"eval_loss": "@BIG@"}},
        "METRIC_HUGE": {"metrics": {"eval_loss": "@HUGE@"}},
        "METRIC_INF": {"metrics": {"eval_loss": 1e999}},
        "DURATION_NEG_INF": {"duration_s": -1e999},
        "METRIC_NAN": {"metrics": {"final_train_loss": float("nan")}},
        "NODES_BIG": {"nodes": "@BIG@"},
        "NODES_STR": {"nodes": "2"},
        "EXIT_BOOL": {"exit_code": True},
        "POINTS_INF": {"loss_points": [[1, 1e999]]},
        "HYPER_INF": {"hyperparameters": {"learning_rate": 1e999}},
        "RESOLVED_DEEP_INF": {"resolved_config": deep},
        "METRICS_LIST": {"metrics": [1, 2]},
        "STATUS_BAD": {"status": "won"},
    }
    text = json.dumps({**base, **variants[raw]})
    return text.replace('"@BIG@"', BIG).replace('"@HUGE@"', "9" * 5000)


# -- stored run.json files ----------------------------------------------------------------

def test_reconcile_quarantines_each_bad_stored_record_and_lands_the_rest(
        remote: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    good = launch(remote, store, [rec("good1"), rec("good2", status="failed")])
    for i, kind in enumerate(BAD_RECORDS):
        folder = store / "experiments/alpaca/llama-3.1-8b/sft" / f"bad{i:02d}"
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(bad_text(kind, good[0], f"bad{i:02d}"))
    code = main(["index", "reconcile", "--storage", str(store), "--remote", remote.as_uri()])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "Traceback" not in out.err
    # every bad one named, once, with its place; every good one landed
    for i in range(len(BAD_RECORDS)):
        assert out.err.count(f"/bad{i:02d}/run.json") == 1, (i, out.err)
    assert "published 2: good1, good2" in out.out
    assert {Path(p).name for p in entries(remote)} == {"sft__good1.json", "sft__good2.json"}
    assert entry(remote, "good1").to_json() == good[0].to_json()
    assert all(len(line) < 500 for line in out.err.splitlines())


def test_reconcile_lands_no_forged_run_json(remote: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    real, waiting = launch(remote, store, [rec("real"), rec("waiting")])
    Path(waiting.artifacts_uri.removeprefix("file://"), "run.json").unlink()  # still running
    forged = {
        # a copy of a real run with a better eval loss, at another place
        "elsewhere": as_dict(real, metrics={"eval_loss": 0.001}),
        # a run nobody launched
        "unlaunched": as_dict(real, run_id="madeup", metrics={"eval_loss": 0.001}),
        # a finished record for a run still running, pointing at storage it controls
        "other artifacts": as_dict(waiting, metrics={"eval_loss": 0.001},
                                   artifacts_uri=(store / "evil").as_uri()),
        # a run that says it was launched
        "launched": as_dict(rec("newrun", status="launched")),
    }
    for name, data in forged.items():
        folder = store / "experiments/alpaca/llama-3.1-8b/sft" / name.replace(" ", "-")
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps(data))
    (store / "evil").mkdir()
    (store / "evil/run.json").write_text(json.dumps(forged["other artifacts"]))
    code = main(["index", "reconcile", "--storage", str(store), "--remote", remote.as_uri()])
    out = capsys.readouterr()
    assert code == 0 and "Traceback" not in out.err
    assert out.err.count("not landed") == len(forged), out.err
    assert "published 1: real" in out.out
    assert entry(remote, "real").metrics.eval_loss == real.metrics.eval_loss
    assert entry(remote, "waiting").status == "launched"
    assert {Path(p).name for p in entries(remote)} == {"sft__real.json", "sft__waiting.json"}


# -- staged refs --------------------------------------------------------------------------

def test_a_forged_pending_ref_does_not_land(remote: Path, tmp_path: Path) -> None:
    """Anyone who can push a ref pushes refs/ftops/pending/<token> with a "succeeded"
    for a run that is still running, a made-up eval loss and every identity field copied
    from main: no publisher lands it, reconcile quarantines it, and the run's real
    record lands when it comes."""
    store = tmp_path / "store"
    running, other = launch(remote, store, [rec("running"), rec("other")])
    real_json = Path(running.artifacts_uri.removeprefix("file://"), "run.json")
    real_json.unlink()  # the hook has not written it: the run is still going
    copied = json.loads(show(remote, f"{ENTRY_DIR}/sft__running.json"))
    forgeries = [
        {**copied, "status": "succeeded", "metrics": {"eval_loss": 0.0001}},
        {**copied, "status": "cancelled", "message": "cancelled by nobody"},
        {**copied, "status": "succeeded", "artifacts_uri": (store / "evil").as_uri()},
        {**copied, "run_id": "unlaunched", "status": "succeeded"},
        {**copied, "run_id": "newrun", "status": "launched"},
    ]
    (store / "evil").mkdir()
    (store / "evil/run.json").write_text(json.dumps(forgeries[2]))
    forged_refs = [stage(remote, tmp_path, [f], str(i)) for i, f in enumerate(forgeries)]
    head = git("--git-dir", str(remote), "rev-parse", "main")

    # the hook of another run publishes, verifying others' staged records: none lands
    result = publish([other], remote=remote.as_uri(), verify=StorageVerifier())
    assert result.published == ("other",) and result.swept == ()
    assert entry(remote, "running").status == "launched"
    # a publisher that cannot verify leaves them alone too
    publish([rec("third", status="launched")], remote=remote.as_uri())
    assert sorted(refs(remote, PENDING_PREFIX)) == sorted(forged_refs)
    assert git("--git-dir", str(remote), "rev-parse", "main") != head

    # reconcile moves each one aside and says why
    done = reconcile([], remote=remote.as_uri(), verify=StorageVerifier(), **FAST)
    assert done.swept == () and done.published == ()
    assert len(done.quarantined) == len(forgeries)
    for ref in forged_refs:
        assert any(q.startswith(f"{ref} moved to {QUARANTINE_PREFIX}") for q in done.quarantined)
    assert refs(remote, PENDING_PREFIX) == []
    assert len(refs(remote, QUARANTINE_PREFIX)) == len(forgeries)  # kept, for a person
    assert entry(remote, "running").status == "launched"
    names = {Path(p).name for p in entries(remote)}
    assert not names & {"sft__unlaunched.json", "sft__newrun.json"}

    # the run's own record lands when the hook publishes it
    final = RunRecord.from_dict(as_dict(running, metrics={"eval_loss": 1.25}))
    real_json.write_text(final.to_json())
    assert publish([final], remote=remote.as_uri()).published == ("running",)
    assert entry(remote, "running").metrics.eval_loss == 1.25


def test_bad_records_on_a_staged_ref_crash_no_publisher_and_the_good_ones_land(
        remote: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    kinds = [k for k in BAD_RECORDS if BAD_RECORDS[k].isupper()]
    goods = launch(remote, store, [rec(f"g{i:02d}") for i in range(len(kinds))])
    for i, kind in enumerate(kinds):
        # a set holding a good record and a bad one, as a broken peer could write it
        raw = "[" + goods[i].to_json() + ", " + bad_text(kind, goods[i], f"b{i:02d}") + "]"
        stage(remote, tmp_path, [], f"s{i}", raw=raw)
    # publishers: no crash, nothing of those sets lands
    publish([rec("x1", status="launched")], remote=remote.as_uri())
    publish([rec("x2", status="launched")], remote=remote.as_uri(), verify=StorageVerifier())
    for g in goods:
        assert entry(remote, g.run_id).status == "launched"
    # reconcile: the good half of every set lands, every set is quarantined and named;
    # a set Python cannot even parse (5000 digits) lands nothing, its good record waits
    # in storage for the next reconcile
    unreadable = {goods[i].run_id for i, k in enumerate(kinds) if "5000" in k}
    done = reconcile([], remote=remote.as_uri(), verify=StorageVerifier(), **FAST)
    assert sorted(done.swept) == sorted(g.run_id for g in goods if g.run_id not in unreadable)
    assert len(done.quarantined) == len(kinds)
    assert sum("record 1: not a valid run record" in q for q in done.quarantined) == \
        len(kinds) - len(unreadable)
    assert sum("record set: not JSON" in q for q in done.quarantined) == len(unreadable)
    assert refs(remote, PENDING_PREFIX) == []
    later = reconcile(stored(goods), remote=remote.as_uri(), verify=StorageVerifier())
    assert set(later.published) == unreadable
    for g in goods:
        assert entry(remote, g.run_id).to_json() == g.to_json()
    assert not any(Path(p).name.startswith("sft__b") for p in entries(remote))


# -- numbers no reader can use, in an index entry ------------------------------------------

OVERFLOWS = {
    "400-digit eval_loss": ("metrics", "eval_loss", BIG),
    "1e999 train_samples_per_second": ("metrics", "train_samples_per_second", "1e999"),
    "-1e999 duration_s": ("", "duration_s", "-1e999"),
    "NaN final_train_loss": ("metrics", "final_train_loss", "NaN"),
    "400-digit nodes": ("", "nodes", BIG),
    "400-digit exit_code": ("", "exit_code", BIG),
    "1e999 in loss_points": ("", "loss_points", "[[1, 1e999]]"),
    "400-digit learning_rate": ("hyperparameters", "learning_rate", BIG),
}


def overflowing(record: RunRecord, where: str, key: str, literal: str) -> str:
    data = as_dict(record)
    marker = "@NUMBER@"
    if where:
        data[where] = {**(data.get(where) or {}), key: marker}
    else:
        data[key] = marker
    return json.dumps(data, indent=2, sort_keys=True).replace(f'"{marker}"', literal)


@pytest.mark.parametrize("case", list(OVERFLOWS), ids=list(OVERFLOWS))
def test_numbers_that_overflow_crash_no_command(case: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from lint_harness import make_workspace

    from render.browse.sync import write_readme

    where, key, literal = OVERFLOWS[case]
    root = make_workspace(tmp_path)
    index = root / "outputs-index"
    lora = "experiments/alpaca_en/llama-3.1-8b/sft_lora_r8_lr1e-4_v1.yaml"
    good = rec("goodrun", dataset="alpaca_en", experiment="sft_full", experiment_path=lora,
               status="succeeded", gpu_type="h100-80gb", nodes=1, gpus_per_node=8,
               metrics=Metrics(train_samples_per_second=10.0))
    write_readme(index)
    (index / "alpaca_en/llama-3.1-8b").mkdir(parents=True)
    (index / f"alpaca_en/llama-3.1-8b/sft_full__{good.run_id}.json").write_text(good.to_json())
    bad = RunRecord.from_dict(as_dict(good, run_id="badrun"))
    path = index / "alpaca_en/llama-3.1-8b/sft_full__badrun.json"
    path.write_text(overflowing(bad, where, key, literal))
    for argv, code in ((["index", "check"], 1), (["index", "readme"], 1),
                       (["plan", lora], 0)):
        assert main(["--repo", str(root), *argv]) == code, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err
        if code:
            (line,) = err.strip().splitlines()
            assert "sft_full__badrun.json: corrupt index entry" in line, line
            assert len(line) < 600
    # publish and reconcile to a remote whose main holds the entry: a publish reads
    # only the folders its records land in, so one into another folder lands; one into
    # that folder gives one clean error, the records stay in storage
    remote = make_remote(tmp_path / "r")
    store = tmp_path / "store"
    launch(remote, store, [rec("stored1")])  # a run whose record waits in storage
    work = tmp_path / "clone"
    git("clone", "--quiet", str(remote), str(work))
    (work / "outputs-index/alpaca_en/llama-3.1-8b").mkdir(parents=True)
    (work / "outputs-index/alpaca_en/llama-3.1-8b/sft_full__badrun.json").write_text(
        path.read_text())
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "a hand edit", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    code = main(["index", "reconcile", "--storage", str(store), "--remote", remote.as_uri()])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err
    from render.record.destination import IndexDestination

    delivery = IndexDestination(remote=remote.as_uri()).deliver([rec("another")])
    assert delivery.ok, delivery.message
    same_folder = rec("another2", dataset="alpaca_en", experiment="sft_full",
                      experiment_path=lora)
    delivery = IndexDestination(remote=remote.as_uri()).deliver([same_folder])
    assert not delivery.ok and "sft_full__badrun.json" in delivery.message
    assert "Traceback" not in delivery.message


def test_stored_records_reader_is_total(tmp_path: Path) -> None:
    """`stored_records` never raises for what a file holds: each bad one is warned."""
    from render.record.hook import stored_records
    from render.record.storage import open_storage

    good = rec("g", artifacts_uri="file:///x")
    for i, kind in enumerate(BAD_RECORDS):
        folder = tmp_path / "experiments/a/m/e" / f"r{i}"
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(bad_text(kind, good, f"r{i}"))
    warned: list[str] = []
    found = stored_records(open_storage(str(tmp_path)), warn=warned.append)
    assert found == [] and len(warned) == len(BAD_RECORDS)
    assert all(isinstance(s, StoredRecord) for s in found)
