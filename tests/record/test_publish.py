"""Publishing index entries to a real git remote (a bare repository in tmp_path).

Records of other publishers (staged refs) and stored run.json files land only when they
match a run its launcher recorded (`render.record.trust`): `launch()` below plays the
launcher (the `launched` entry on main) and the hook (run.json in file storage)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from index_remote import FAST, entries, generated, git, launch, make_remote, rec, show, stored

from render.browse.leaderboard import Boards
from render.browse.readme import render_index, render_readme
from render.browse.sync import stale_files
from render.errors import FatalError
from render.record.publish import (
    PENDING_PREFIX,
    PublishError,
    PublishResult,
    publish,
    reconcile,
    redact,
)
from render.record.results import Leaderboard
from render.record.runrecord import Metrics, RunRecord
from render.record.trust import StorageVerifier, StoredRecord


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


def test_publish_one_record(remote: Path, tmp_path: Path) -> None:
    r = rec(loss_points=[[10, 2.5], [20, 1.75], [30, 1.5]])
    result = publish([r], remote=remote.as_uri(), workdir=tmp_path / "work")
    assert result.published == ("r1",) and result.unchanged == () and result.attempts == 1
    assert result.commit == git("--git-dir", str(remote), "rev-parse", "main").strip()
    assert show(remote, "outputs-index/alpaca/llama-3.1-8b/sft__r1.json") == r.to_json()
    readme = show(remote, "outputs-index/README.md")
    assert readme == render_readme([r])
    # the commit holds every generated file: the map, the run log, the dataset's
    # leaderboard, the model README, the SVG
    assert generated(remote) == render_index([r])
    assert set(generated(remote)) == {
        "README.md", "summary.jsonl", "alpaca/README.md", "alpaca/runs.csv",
        "alpaca/llama-3.1-8b/README.md", "alpaca/llama-3.1-8b/sft__r1.svg"
    }
    model = show(remote, "outputs-index/alpaca/llama-3.1-8b/README.md")
    # the run id opens its chart; the chart is shown below the table
    assert ("| [sft](../../../experiments/alpaca/llama-3.1-8b/sft.yaml) · [r1](sft__r1.svg) "
            "· jk | succeeded") in model
    assert "![training loss of sft · r1](sft__r1.svg)" in model
    log = git("--git-dir", str(remote), "log", "-1", "--format=%an <%ae>|%cn|%s", "main")
    assert log.strip() == (
        "ftops-bot <ftops-bot@users.noreply.github.com>|ftops-bot|index: sft r1 succeeded"
    )
    # the rest of the repository is untouched
    assert show(remote, "experiments/alpaca/llama-3.1-8b/sft.yaml") == "learning_rate: 1e-4\n"
    # the scratch clone is cleaned up
    assert list((tmp_path / "work").iterdir()) == []


def test_publish_ranks_by_the_leaderboard_on_the_remote(remote: Path, tmp_path: Path) -> None:
    # the remote's dataset.yaml names the leaderboard: the publisher's checkout reads it
    seed = tmp_path / "seed"
    (seed / "experiments/alpaca/dataset.yaml").write_text(
        "leaderboard: {metric: final_train_loss, direction: lower}\n")
    git("add", "-A", cwd=seed)
    git("commit", "--quiet", "-m", "leaderboard", cwd=seed)
    git("push", "--quiet", str(remote), "main", cwd=seed)
    runs = [rec("r1", metrics=Metrics(final_train_loss=0.5, eval_loss=2.0)),
            rec("r2", metrics=Metrics(final_train_loss=0.9, eval_loss=1.0))]
    publish(runs, remote=remote.as_uri(), workdir=tmp_path / "work")
    board = show(remote, "outputs-index/alpaca/README.md")
    assert "Runs are ranked by **final train loss** (lower is better; named in " \
           "`experiments/alpaca/dataset.yaml`)" in board
    assert board.index("| 1 | [sft]") < board.index("· r1 |") < board.index("· r2 |")
    boards = Boards(by_dataset={"alpaca": Leaderboard(
        "final_train_loss", "lower", "experiments/alpaca/dataset.yaml")})
    assert generated(remote) == render_index(runs, boards)


def test_publish_plain_path_remote_and_custom_author(remote: Path) -> None:
    publish([rec()], remote=str(remote), author=("bot", "bot@example.com"))
    assert git("--git-dir", str(remote), "log", "-1", "--format=%ae", "main").strip() == (
        "bot@example.com"
    )


def test_publish_is_idempotent_and_lifecycle_wins(remote: Path) -> None:
    url = remote.as_uri()
    publish([rec(status="running")], remote=url)
    publish([rec(status="succeeded")], remote=url)
    head = git("--git-dir", str(remote), "rev-parse", "main")
    # a stale status (e.g. a late "running" heartbeat) changes nothing, pushes nothing
    result = publish([rec(status="running")], remote=url)
    assert result.published == () and result.unchanged == ("r1",) and result.commit is None
    assert git("--git-dir", str(remote), "rev-parse", "main") == head
    assert '"status": "succeeded"' in show(remote, "outputs-index/alpaca/llama-3.1-8b/sft__r1.json")


def test_publish_several_in_one_commit(remote: Path) -> None:
    runs = [rec(f"r{i}") for i in range(3)]
    result = publish(runs, remote=remote.as_uri())
    assert result.published == ("r0", "r1", "r2")
    subject = git("--git-dir", str(remote), "log", "-1", "--format=%B", "main")
    assert subject.startswith("index: 3 runs\n\nindex: sft r0 succeeded\n")
    assert len(entries(remote)) == 3


def test_concurrent_publishers_lose_nothing(remote: Path, tmp_path: Path) -> None:
    url = remote.as_uri()
    runs = [
        rec(
            f"run{i:02d}",
            dataset=("alpaca", "wiki")[i % 2],
            experiment=f"exp{i % 5}",
            model=("llama-3.1-8b", "qwen2.5-7b", "mistral-7b")[i % 3],
            status=("succeeded", "failed", "running")[i % 3],
            metrics=Metrics(eval_loss=1.0 + i / 100),
            loss_points=[[s, 3.0 - s / (i + 1)] for s in range(1, 1 + i % 7)],
        )
        for i in range(30)
    ]

    runs = launch(remote, tmp_path / "store", runs)

    def one(r: RunRecord) -> PublishResult:
        # the hook's publish: its own record, and others' staged records it can verify
        return publish([r], remote=url, workdir=tmp_path / "w", verify=StorageVerifier())

    with ThreadPoolExecutor(max_workers=30) as pool:
        results = list(pool.map(one, runs))
    assert all(res.published == (r.run_id,) for res, r in zip(results, runs, strict=True))
    assert len(entries(remote)) == 30
    assert show(remote, "outputs-index/README.md") == render_readme(runs)
    # every generated file (model READMEs, SVGs) is exactly what write_readme makes
    # from all entries, and there is no other
    expected = render_index(runs)
    assert generated(remote) == expected
    # 25 run charts, the top runs of each dataset, 6 model READMEs, 2 dataset READMEs,
    # their 2 runs.csv files, the map and the summary
    assert sum(k.endswith(".svg") for k in expected) == 27 and len(expected) == 39
    # linear history of fast-forwards (no merge commits); staged records landed in
    # batches by whoever pushed first, so fewer than 30 commits
    count = git("--git-dir", str(remote), "rev-list", "--count", "--merges", "main")
    assert count.strip() == "0"
    commits = int(git("--git-dir", str(remote), "rev-list", "--count", "main"))
    assert 3 <= commits <= 32  # the seed, the launcher's commit, then batches
    # every staged ref was landed and deleted
    assert git("--git-dir", str(remote), "for-each-ref", "refs/ftops") == ""


def test_concurrent_updates_of_one_run_keep_the_latest_status(remote: Path) -> None:
    url = remote.as_uri()
    publish([rec(status="launched")], remote=url)
    statuses = ["running"] * 6 + ["succeeded"] + ["launched"] * 3

    def one(status: str) -> None:
        publish([rec(status=status)], remote=url, attempts=30, **FAST)

    with ThreadPoolExecutor(max_workers=len(statuses)) as pool:
        list(pool.map(one, statuses))
    entry = show(remote, "outputs-index/alpaca/llama-3.1-8b/sft__r1.json")
    assert RunRecord.from_json(entry).status == "succeeded"


def test_refusing_remote_then_reconcile(remote: Path, tmp_path: Path) -> None:
    r, r1 = launch(remote, tmp_path / "store", [rec("r42"), rec("r1", status="failed")])
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'index is frozen' >&2\nexit 1\n")
    hook.chmod(0o755)
    # the caller's durable record: run.json beside the artifacts
    run_json = Path(r.artifacts_uri.removeprefix("file://")) / "run.json"
    before = git("--git-dir", str(remote), "rev-parse", "main")

    with pytest.raises(PublishError) as err:
        publish([r], remote=remote.as_uri(), attempts=3, **FAST)
    assert isinstance(err.value, FatalError)
    assert err.value.run_ids == ("r42",)
    assert "after 3 attempts" in str(err.value) and "reconcile" in str(err.value)
    assert "pre-receive hook declined" in str(err.value)
    assert git("--git-dir", str(remote), "rev-parse", "main") == before
    assert run_json.read_text() == r.to_json()  # nothing lost

    hook.unlink()
    result = reconcile(stored([r, r1]), remote=remote.as_uri(), verify=StorageVerifier(),
                       **FAST)
    assert result.published == ("r42", "r1") and result.refused == ()
    assert show(remote, "outputs-index/alpaca/llama-3.1-8b/sft__r42.json") == r.to_json()
    assert show(remote, "outputs-index/README.md") == render_readme([r, r1])
    msg = git("--git-dir", str(remote), "log", "-1", "--format=%B", "main")
    assert msg.startswith("index: reconcile 2 runs\n")
    # in sync now: nothing to do
    assert reconcile(stored([r, r1]), remote=remote.as_uri(),
                     verify=StorageVerifier()).published == ()


FREEZE_MAIN = """#!/bin/sh
while read old new ref; do
  if [ "$ref" = "refs/heads/main" ]; then echo "main is frozen" >&2; exit 1; fi
done
exit 0
"""


def test_staged_records_survive_and_are_landed_by_the_next_publisher(
        remote: Path, tmp_path: Path) -> None:
    r7, r8 = launch(remote, tmp_path / "store", [rec("r7", status="failed"), rec("r8")])
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(FREEZE_MAIN)
    hook.chmod(0o755)
    with pytest.raises(PublishError) as err:
        publish([r7], remote=remote.as_uri(), attempts=3, **FAST)
    staged = err.value.staged
    assert staged.startswith(PENDING_PREFIX) and staged in str(err.value)
    assert staged in git("--git-dir", str(remote), "for-each-ref", "refs/ftops")
    hook.unlink()
    # a publisher that cannot verify others' records (no storage) leaves them staged
    other = publish([rec("r0", status="launched")], remote=remote.as_uri())
    assert other.swept == () and staged in git("--git-dir", str(remote), "for-each-ref")
    # a hook's publish verifies r7 against its launched entry and its run.json, lands
    # it too, and deletes the staged ref
    result = publish([r8], remote=remote.as_uri(), verify=StorageVerifier())
    assert result.published == ("r8",) and result.swept == ("r7",)
    assert {Path(p).name for p in entries(remote)} == {"sft__r0.json", "sft__r7.json",
                                                       "sft__r8.json"}
    assert show(remote, "outputs-index/alpaca/llama-3.1-8b/sft__r7.json") == r7.to_json()
    assert git("--git-dir", str(remote), "for-each-ref", "refs/ftops") == ""


def test_reconcile_lands_staged_records(remote: Path, tmp_path: Path) -> None:
    (r9,) = launch(remote, tmp_path / "store", [rec("r9")])
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(FREEZE_MAIN)
    hook.chmod(0o755)
    with pytest.raises(PublishError):
        publish([r9], remote=remote.as_uri(), attempts=2, **FAST)
    hook.unlink()
    # nothing of ours, but it lands r9
    result = reconcile([], remote=remote.as_uri(), verify=StorageVerifier())
    assert result.published == () and result.swept == ("r9",)
    assert [Path(p).name for p in entries(remote)] == ["sft__r9.json"]
    assert show(remote, "outputs-index/README.md") == render_readme([r9])
    assert git("--git-dir", str(remote), "for-each-ref", "refs/ftops") == ""


def test_garbage_under_the_staging_prefix_is_ignored(remote: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    git("clone", "--quiet", str(remote), str(work))
    (work / "pending.json").write_text('{"format": "ftops-pending/1", "records": [{"x": 1}]}')
    git("add", "pending.json", cwd=work)
    git("commit", "--quiet", "-m", "junk", cwd=work)
    git("push", "--quiet", "origin", f"HEAD:{PENDING_PREFIX}junk", cwd=work)
    assert publish([rec()], remote=remote.as_uri()).published == ("r1",)
    assert f"{PENDING_PREFIX}junk" in git("--git-dir", str(remote), "for-each-ref")


def test_reconcile_publishes_only_missing_or_earlier(remote: Path, tmp_path: Path) -> None:
    url = remote.as_uri()
    a, b, c = launch(remote, tmp_path / "store",
                     [rec("a", status="succeeded"), rec("b", status="failed"), rec("c")])
    publish([a, RunRecord.from_dict({**json.loads(b.to_json()), "status": "running"})],
            remote=url)
    c_path = Path(c.artifacts_uri.removeprefix("file://")) / "run.json"
    c_path.unlink()  # c has not finished: no run.json, only its launched entry
    a2 = RunRecord.from_dict({**json.loads(a.to_json()), "message": "a later copy"})
    (Path(a.artifacts_uri.removeprefix("file://")) / "run.json").write_text(a2.to_json())
    result = reconcile(stored([a2, b, c]), remote=url, verify=StorageVerifier())
    assert result.published == ("b",)  # a: same status, the index wins; c: nothing stored
    entry = RunRecord.from_json(show(remote, "outputs-index/alpaca/llama-3.1-8b/sft__a.json"))
    assert entry.message == ""
    assert RunRecord.from_json(
        show(remote, "outputs-index/alpaca/llama-3.1-8b/sft__c.json")).status == "launched"


def test_credentials_are_redacted(tmp_path: Path) -> None:
    url = "https://ftops:s3cr3t-t0ken@127.0.0.1:9/org/repo.git"
    with pytest.raises(PublishError) as err:
        publish([rec()], remote=url, attempts=2, workdir=tmp_path, base_delay=0.0)
    message = str(err.value)
    assert "s3cr3t-t0ken" not in message and "ftops:" not in message
    assert "https://***@127.0.0.1:9/org/repo.git" in message
    assert redact("x https://u:p@h/r y http://tok@h2") == "x https://***@h/r y http://***@h2"


def test_missing_branch_and_bad_input(remote: Path) -> None:
    with pytest.raises(PublishError, match="branch 'nope' does not exist"):
        publish([rec()], remote=remote.as_uri(), branch="nope")  # no retries needed
    with pytest.raises(FatalError, match="invalid branch"):
        publish([rec()], remote=remote.as_uri(), branch="--upload-pack=x")
    with pytest.raises(FatalError, match="invalid remote"):
        publish([rec()], remote="--upload-pack=touch /tmp/x")
    # every failure is a PublishError (a FatalError): the hook keeps its record
    with pytest.raises(PublishError, match="dataset"):
        publish([rec(dataset="../x")], remote=remote.as_uri())
    with pytest.raises(PublishError, match="invalid branch"):
        reconcile([StoredRecord(rec(), "file:///x/run.json")], remote=remote.as_uri(),
                  verify=StorageVerifier(), branch="a..b")
    assert publish([], remote=remote.as_uri()).published == ()


def test_corrupt_remote_entry_is_a_publish_error(remote: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    git("clone", "--quiet", str(remote), str(work))
    bad = work / "outputs-index/alpaca/llama-3.1-8b/sft__r1.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "corrupt", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    with pytest.raises(PublishError, match="outputs-index/alpaca/llama-3.1-8b/sft__r1.json"):
        publish([rec()], remote=remote.as_uri(), attempts=1)


@pytest.mark.parametrize("summary", [True, False])
def test_a_linked_folder_on_the_branch_is_never_written_through(
        remote: Path, tmp_path: Path, summary: bool) -> None:
    url = remote.as_uri()
    publish([rec("r1", dataset="wiki")], remote=url)  # the index has a summary
    work = tmp_path / "w"
    git("clone", "--quiet", str(remote), str(work))
    (work / "outputs-index/alpaca").symlink_to("/tmp")
    if not summary:  # the full regeneration's way (a checkout of every entry)
        git("rm", "--quiet", "outputs-index/summary.jsonl", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "a link", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    before = git("--git-dir", str(remote), "rev-parse", "main")
    with pytest.raises(PublishError, match=r"outputs-index/alpaca is a symbolic link"):
        publish([rec("r2")], remote=url, attempts=1)
    assert git("--git-dir", str(remote), "rev-parse", "main") == before


def test_stale_readme_is_regenerated_not_merged(remote: Path, tmp_path: Path) -> None:
    url = remote.as_uri()
    publish([rec("r1", loss_points=[[1, 1.0], [2, 0.5]])], remote=url)
    work = tmp_path / "w"
    git("clone", "--quiet", str(remote), str(work))
    index = work / "outputs-index"
    readme = index / "README.md"
    readme.write_text(readme.read_text() + "\nhand edit that conflicts\n")
    model = index / "alpaca/llama-3.1-8b/README.md"
    model.write_text(model.read_text() + "\nhand edit\n")
    (index / "alpaca/llama-3.1-8b/sft__r1.svg").write_text("<svg/>\n")
    (index / "alpaca/llama-3.1-8b/sft__gone.svg").write_text("<svg/>\n")  # no entry
    (index / "old/model").mkdir(parents=True)
    (index / "old/model/README.md").write_text("no entries here\n")
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "hand edits", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    publish([rec("r2")], remote=url)
    runs = [rec("r1", loss_points=[[1, 1.0], [2, 0.5]]), rec("r2")]
    assert show(remote, "outputs-index/README.md") == render_readme(runs)
    # the edits in the folder the publish touched are undone and its stale files
    # removed; a folder it did not touch is not read (that is what makes a publish
    # cheap): its drift stays until `ftops index readme`, and `ftops index check` fails
    expected = render_index(runs)
    assert generated(remote) == {**expected, "old/model/README.md": "no entries here\n"}
    git("pull", "--quiet", cwd=work)
    assert stale_files(index) == ["old/model/README.md"]
    # with the summary gone, the publish cannot say and regenerates everything
    git("rm", "--quiet", "outputs-index/summary.jsonl", cwd=work)
    git("commit", "--quiet", "-m", "no summary", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    publish([rec("r3")], remote=url)
    assert generated(remote) == render_index([*runs, rec("r3")])


def test_index_token_goes_in_a_header_not_the_url(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    import base64

    from render.record.gitcmd import git_env as _env

    monkeypatch.setenv("FTOPS_INDEX_TOKEN", "s3cr3t-token")
    env = _env(("bot", "bot@example.com"), tmp_path)
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    header = env["GIT_CONFIG_VALUE_0"]
    assert header.startswith("AUTHORIZATION: basic ")
    assert base64.b64decode(header.split()[-1]).decode() == "x-access-token:s3cr3t-token"
    assert not any("s3cr3t-token" in v for v in env.values())


def _folder_run(run_id: str, dataset: str, model: str, eval_loss: float) -> RunRecord:
    return rec(run_id, dataset=dataset, model=model,
               experiment_path=f"experiments/{dataset}/{model}/sft.yaml",
               metrics=Metrics(final_train_loss=1.0, eval_loss=eval_loss),
               loss_points=[[1, 2.0], [2, eval_loss]])


@pytest.mark.parametrize("partial", [True, False], ids=["partial-clone", "filter-ignored"])
def test_a_publish_touches_only_what_its_folder_affects(remote: Path, tmp_path: Path,
                                                        partial: bool) -> None:
    # a server that allows partial clones (GitHub does) and one that ignores the filter
    # (a local bare repository by default): the same result, only slower
    git("--git-dir", str(remote), "config", "uploadpack.allowFilter", str(partial).lower())
    url = remote.as_uri()
    first = [_folder_run(f"a{i}", ds, m, 1.0 + i / 10)
             for i, (ds, m) in enumerate([("alpaca", "llama-3.1-8b"), ("alpaca", "qwen2.5-7b"),
                                          ("wiki", "llama-3.1-8b"), ("wiki", "qwen2.5-7b")])]
    publish(first, remote=url, workdir=tmp_path / "work", **FAST)
    before = generated(remote)
    # an entry nobody can read, in a folder this publish does not touch: it is never read
    work = tmp_path / "w"
    git("clone", "--quiet", str(remote), str(work))
    (work / "outputs-index/wiki/qwen2.5-7b/sft__a3.json").write_text("{not json")
    git("commit", "--quiet", "-am", "a corrupt entry elsewhere", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)

    new = _folder_run("b1", "alpaca", "qwen2.5-7b", 1.5)  # not the best of alpaca
    result = publish([new], remote=url, workdir=tmp_path / "work", **FAST)
    assert result.published == ("b1",)
    changed = set(git("--git-dir", str(remote), "diff", "--name-only", "main~1", "main",
                      "--", "outputs-index/").split())
    assert changed == {f"outputs-index/{p}" for p in (
        "README.md", "summary.jsonl", "alpaca/README.md", "alpaca/runs.csv",
        "alpaca/top-runs.svg",  # b1 is among alpaca's top 5, compared there
        "alpaca/qwen2.5-7b/README.md", "alpaca/qwen2.5-7b/sft__b1.json",
        "alpaca/qwen2.5-7b/sft__b1.svg")}
    after = generated(remote)
    assert after == render_index([*first, new])
    assert {k: v for k, v in after.items() if not k.startswith(("alpaca/", "README",
                                                               "summary"))} == \
        {k: v for k, v in before.items() if not k.startswith(("alpaca/", "README", "runs",
                                                             "summary"))}
