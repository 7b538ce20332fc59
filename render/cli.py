"""`ftops`: one command for everything the project does.

`COMMANDS` at the bottom is the one parser table: each row names a subcommand, its help,
its arguments and its handler. Handlers are thin: they call the stage that does the work
(`render.propose`, `render.manifests`, `render.launch`, `render.record`, `render.browse`)
and print its result. Stages are imported inside the handlers, so `ftops --help` and
`ftops lint` start without loading the cluster client or the training stack.

Longer than our other modules on purpose: it is the one place where every command, its
arguments and its printing live, so a newcomer reads the whole CLI in one file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from render.errors import FatalError, printable

if TYPE_CHECKING:
    from render.launch.local import Delivered
    from render.manifests.runspec import RunSpec
    from render.propose.experiment import Workspace
    from render.record.indexref import IndexAt
    from render.record.trust import StoredRecord

Handler = Callable[[argparse.Namespace], int]


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _workspace(args: argparse.Namespace) -> Workspace:
    from render.propose.experiment import Workspace

    return Workspace(Path(args.repo))


def _files_from(name: str) -> list[Path]:
    """Paths from a NUL-delimited list (`ftops changes --null`; "-" is stdin)."""
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise FatalError(f"--files-from {name}: {exc.strerror}") from None
    text = data.decode("utf-8", "surrogateescape")
    paths = [p for p in text.split("\0") if p]
    for p in paths:
        if any(ord(c) < 32 or ord(c) == 127 for c in p):
            shown = p.encode("unicode_escape").decode("ascii")
            raise FatalError(f"--files-from {name}: {shown!r} has a control character in "
                             "its name; rename the file")
    return [Path(p) for p in paths]


def _selection(args: argparse.Namespace) -> list[Path] | None:
    """The experiment files named (positional and --files-from), or None for all."""
    named = [Path(p) for p in args.paths]
    if getattr(args, "files_from", None) is not None:
        return named + _files_from(args.files_from)  # an empty list means none
    return named or None


def _specs(args: argparse.Namespace, index_at: IndexAt | None = None
           ) -> tuple[Workspace, list[RunSpec]]:
    """The selected experiments as RunSpecs at the launching commit; lint must be clean."""
    from render.manifests.runspec import RunSpec, git_commit
    from render.propose.lint import require_clean

    ws = _workspace(args)
    paths = _selection(args)
    experiments = require_clean(ws, paths, index_at=index_at) if paths != [] else []
    commit = args.commit or git_commit(ws.root)
    return ws, [RunSpec(e, commit) for e in experiments]


def _one(ws: Workspace, path: str) -> Any:
    """The one experiment of `path`, lint-clean; a sweep (several runs) is refused."""
    from render.propose.lint import require_clean

    experiments = require_clean(ws, [Path(path)])
    if len(experiments) != 1:
        raise FatalError(f"{path} is a sweep of {len(experiments)} points; this command takes "
                         "one experiment: copy the point you want into its own file, or let "
                         "the merge launch every point on the cluster")
    return experiments[0]


# -- propose -----------------------------------------------------------------------


def cmd_lint(args: argparse.Namespace) -> int:
    from render.propose.lint import lint

    if args.deep:
        import importlib.util

        if importlib.util.find_spec("llamafactory") is None:
            raise FatalError("--deep runs LLaMA-Factory's own parser, which is not installed. "
                             "Install the training extra: pip install -e '.[train]'")
    ws = _workspace(args)
    paths = [Path(p) for p in args.paths] if args.paths else None
    if args.fix:
        from render.propose.fix import fix

        changes = fix(ws, paths)
        for change in changes:
            _say(f"fixed {change.format()}")
        _say(f"fix: {len(changes)} change(s)")
        ws = _workspace(args)  # lint what the files hold now
    index_at = None
    if args.index_ref:
        from render.record.indexref import entries_at

        index_at = entries_at(ws.root, args.index_ref)
        for problem in index_at.problems:
            _say(f"ftops lint: warning: outputs-index at {args.index_ref}: {problem}")
    result = lint(ws, paths, deep=args.deep, index_at=index_at)
    if args.format == "json":
        print(json.dumps({"ok": result.ok, "files_checked": result.files_checked,
                          "findings": [f.as_dict() for f in result.findings],
                          "warnings": [f.as_dict() for f in result.warnings]}, indent=2))
    else:
        for finding in result.findings:
            print(finding.format())
        for warning in result.warnings:  # advisory: stderr, and lint still passes
            print(warning.format(), file=sys.stderr)
        files = len({f.file for f in result.findings})
        if result.findings:
            _say(f"{len(result.findings)} problem(s) in {files} file(s)")
        else:
            _say(f"ok: {result.files_checked} file(s) checked, "
                 f"{len(result.experiments)} experiment(s)")
    if args.show:
        from render.yamldump import dump_yaml

        for exp in result.experiments:
            print(f"# {printable(exp.path)} (resolved)")
            print(dump_yaml(exp.resolved()), end="")
    return 0 if result.ok else 1


def cmd_import(args: argparse.Namespace) -> int:
    from render.propose.importer import Options, import_config
    from render.propose.importsrc import read_source

    ws = _workspace(args)
    src = read_source(args.source, ws, model=args.model)
    opts = Options(
        dataset=args.dataset, model=args.model, name=args.name, owner=args.owner,
        description=args.description,
        dataset_info=Path(args.dataset_info) if args.dataset_info else None,
        data_uri=args.data_uri, data_revision=args.data_revision,
        deepspeed=Path(args.deepspeed) if args.deepspeed else None,
        gpu_type=args.gpu_type, gpus_per_node=args.gpus_per_node, nodes=args.nodes,
        drop=tuple(args.drop or ()), keep=args.keep)
    res = import_config(ws, src, opts)
    _say(f"ftops import: {src.label} ({src.kind})")
    for line in res.lines:
        _say(f"  {line}")
    chosen = [d for d in res.decisions if not d.blocking]
    if chosen:
        _say("chosen for you (the option changes it):")
        for d in chosen:
            _say(f"  - {d.format()}")
    if res.blocking:
        kept = (f"wrote {res.path} as it is (--keep)" if res.path else
                "nothing written; settle each and run the same command again (or --keep)")
        _say(f"left to decide ({kept}):")
        for d in res.blocking:
            _say(f"  - {d.format()}")
        return 1
    for path in res.written:
        if path != res.path:
            print(f"wrote {path}")
    print(f"wrote {res.path} (lints clean)")
    return 0


def _github_output(line: str) -> None:
    """Append `line` to $GITHUB_OUTPUT (a step's outputs, for a later step's `if:`)."""
    out = os.environ.get("GITHUB_OUTPUT")
    if not out:
        raise FatalError("--github-output: GITHUB_OUTPUT is not set (GitHub Actions sets it)")
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def cmd_changes(args: argparse.Namespace) -> int:
    from render.propose.changes import changed_experiments

    paths = changed_experiments(Path(args.repo), args.base, args.head)
    if args.format == "json":
        print(json.dumps(paths))
    elif args.null:
        sys.stdout.write("".join(f"{p}\0" for p in paths))
    else:
        for p in paths:
            print(p)
    if args.github_output:
        _github_output(f"count={len(paths)}")
    _say(f"ftops changes: {len(paths)} experiment(s) added or changed")
    return 0


# -- manifests ---------------------------------------------------------------------


def _ready(specs: list[RunSpec]) -> list[RunSpec]:
    """The specs that can run now: a pipeline stage whose input has not succeeded waits
    (said on stderr), and is neither rendered nor applied."""
    out = []
    for spec in specs:
        if spec.exp.waiting:
            _say(f"waiting  {spec.exp.path}: {spec.exp.waiting}")
        else:
            out.append(spec)
    return out


def cmd_render(args: argparse.Namespace) -> int:
    from render.manifests.overlay import check_tree, render

    ws, specs = _specs(args)
    specs = _ready(specs)
    out = Path(args.out) if Path(args.out).is_absolute() else ws.root / args.out
    if args.check:
        drift = check_tree(specs, out, ws.root)
        for name in drift:
            print(f"drift: {out.name}/{name}")
        if drift:
            commit = specs[0].commit if specs else "<sha>"
            raise FatalError(f"{len(drift)} rendered file(s) differ from {args.out}; "
                             f"regenerate with: ftops render --commit {commit} --out {args.out}")
        _say(f"ok: {len(specs)} experiment(s) render exactly as in {args.out}")
        return 0
    rendered = render(specs, out, ws.root)
    if args.validate:
        from render.manifests.validate import validate_manifests

        problems = validate_manifests([d for r in rendered for d in r.manifests])
        if problems:
            raise FatalError(f"{len(problems)} rendered object(s) fail validation",
                             tuple(problems))
    for r in rendered:
        print(f"{r.spec.exp.path} -> {ws.rel(r.folder)}/ (run {r.spec.run_id}, "
              f"{len(r.manifests)} objects)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from render.manifests.plan import BaseView, plan

    base = None
    if args.base:
        from render.manifests.basediff import k8s_base_changed, manifest_diffs
        from render.manifests.runspec import git_commit
        from render.record.indexref import edits_since, entries_at

        ws = _workspace(args)
        index_at = entries_at(ws.root, args.base)
        diffs = None
        if k8s_base_changed(ws.root, index_at.commit):
            diffs = manifest_diffs(ws.root, index_at.commit, args.commit or git_commit(ws.root))
        base = BaseView(args.base, index_at, edits_since(ws.root, index_at.commit), diffs)
    ws, specs = _specs(args, index_at=base.index if base else None)
    text = plan(ws, specs, base=base)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from render.manifests import export
    ws = _workspace(args)
    exp = _one(ws, args.experiment)
    folder = Path(args.out) if args.out else export.default_folder(ws, exp)
    data_dir = Path(args.data_dir) if args.data_dir else None
    if args.board:
        res = export.export_board(ws, exp, folder, data_dir=data_dir)
    else:
        res = export.export_cli(ws, exp, folder, data_dir=data_dir)
    for line in res.warnings:
        _say(f"ftops export: {line}")
    for path in res.files:
        print(f"wrote {ws.rel(path)}")
    if not args.board:
        print(f"run it: {res.command}")
    return 0


def cmd_pr_comment(args: argparse.Namespace) -> int:
    from render.manifests.comment import PermissionDenied, append_step_summary, post_plan

    try:
        body = Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        raise FatalError(f"cannot read {args.file}: {exc.strerror}") from None
    if args.step_summary:
        append_step_summary(body)
    try:
        print(post_plan(body, pr=args.pr, api=args.api, author=args.author))
    except PermissionDenied as exc:
        _say(f"ftops pr-comment: warning: {exc}. The plan is in the job summary.")
    return 0


# -- launch ------------------------------------------------------------------------


def _print_run(done: Delivered) -> int:
    rec = done.record
    m = rec.metrics
    loss = "n/a" if m.final_train_loss is None else f"{m.final_train_loss:.4f}"
    print(f"run {rec.run_id}: {rec.status} (exit {rec.exit_code}) in "
          f"{rec.duration_s if rec.duration_s is not None else '?'} s; final train loss {loss}")
    print(f"  artifacts: {rec.artifacts_uri}")
    if rec.loss_curve:
        print(f"  loss curve: {rec.loss_curve}")
    if rec.tracker_url:
        print(f"  tracker: {rec.tracker_url}")
    print(f"  index: {done.delivery.message}")
    return 0 if rec.status == "succeeded" else 1


def cmd_launch(args: argparse.Namespace) -> int:
    if not args.local:
        raise FatalError("cluster launches happen on merge (the launch workflow runs "
                         "`ftops apply`); use --local to run on this machine")
    from render.launch.local import launch_local
    from render.record.destination import IndexDestination

    ws = _workspace(args)
    exp = _one(ws, args.experiment)
    if exp.waiting:
        raise FatalError(f"{args.experiment} is a pipeline stage that {exp.waiting}")
    destination = IndexDestination.resolve(remote=args.index_remote, checkout=ws.root)
    return _print_run(launch_local(ws, exp, work=Path(args.work), storage_root=args.storage,
                                   nproc=args.nproc, progress=not args.no_progress,
                                   destination=destination))


def cmd_demo(args: argparse.Namespace) -> int:
    from render.launch.demo import DEMO_INDEX_DIR, run_demo
    from render.launch.local import AlreadyDone

    try:
        done = run_demo(_workspace(args), work=Path(args.work), nproc=args.nproc, say=_say)
    except AlreadyDone as exc:
        _say(f"already done: {exc}")
        return 0
    code = _print_run(done)
    rec = done.record
    print(f"  browse: {DEMO_INDEX_DIR}/{rec.dataset}/{rec.model}/README.md "
          f"(and the map in {DEMO_INDEX_DIR}/README.md; the tracked outputs-index/ is "
          f"untouched; `rm -rf {DEMO_INDEX_DIR}` forgets the demo run)")
    return code


def cmd_apply(args: argparse.Namespace) -> int:
    from render.launch.cluster import apply
    from render.launch.kube import Cluster, connect, reachable
    from render.manifests.overlay import render
    from render.record.destination import IndexDestination
    from render.record.index import INDEX_DIR, load_index
    from render.record.runrecord import RunRecord

    if not args.paths and not args.all and args.files_from is None and not args.waiting:
        raise FatalError("name the experiments to apply (the launch workflow passes what "
                         "`ftops changes` selected), or pass --all or --waiting")
    ws, specs = _specs(args)
    indexed = {r.run_id: r.status for r in load_index(ws.root / INDEX_DIR)}
    if args.waiting:
        # pipeline stages whose inputs have succeeded and that have not run
        specs = [s for s in specs if s.exp.inputs and s.run_id not in indexed]
    specs = _ready(specs)
    if args.list:
        for spec in specs:
            print(f"ready    {spec.exp.path} (run {spec.run_id})")
        if args.github_output:
            _github_output(f"count={len(specs)}")
        return 0
    if args.waiting and not specs:
        _say("no waiting pipeline stage is ready")
        return 0
    rendered = render(specs, ws.root / args.out, ws.root)
    api = connect(args.kubeconfig)
    with reachable(api):
        cluster = Cluster(api, ws.profile.namespace)
        results = apply(cluster, [(r.spec.run_id, r.spec.exp.path, r.manifests)
                                  for r in rendered], dry_run=args.dry_run, indexed=indexed)
    for res in results:
        note = f": {res.note}" if res.note else ""
        print(f"{res.action:9} {res.jobset}  ({res.experiment_path}, run {res.run_id}){note}")
    if args.record and not args.dry_run:
        by_id = {r.spec.run_id: r.spec for r in rendered}
        # new runs, and runs whose JobSet exists without a record (a launch whose
        # recording failed, rerun): the launcher's `launched` entry, trusted
        records = [RunRecord.launched(by_id[res.run_id].identity()) for res in results
                   if res.action == "created"
                   or (res.action == "unchanged" and res.run_id not in indexed)]
        delivery = IndexDestination.resolve(checkout=ws.root).deliver(records)
        if records and not delivery.ok:
            raise FatalError(f"the runs were created, but their `launched` records were "
                             f"not: {delivery.message}. Run the launch again: it records "
                             "them without creating anything")
        _say(delivery.message if records else "nothing to record")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from render.launch.cluster import RunStatus, format_table, status
    from render.launch.kube import Cluster, connect, reachable
    from render.record.index import INDEX_DIR, load_index

    ws = _workspace(args)
    records = load_index(ws.root / INDEX_DIR)
    api = connect(args.kubeconfig)
    with reachable(api):
        rows = status(Cluster(api, ws.profile.namespace), records)
    # pipeline stages that wait for their input: no run id yet, their path as experiment
    rows += [RunStatus(run_id="-", experiment=path, jobset="", state="waiting", reason=why)
             for path, why in _waiting_stages(ws)]
    if args.format == "json":
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(format_table(rows))
    return 0


def _waiting_stages(ws: Workspace) -> list[tuple[str, str]]:
    """(experiment path, why) of every pipeline stage that cannot launch yet."""
    from render.propose.lint import lint

    out: dict[str, str] = {}
    for exp in lint(ws).experiments:
        if exp.waiting:
            out.setdefault(exp.path, exp.waiting)
    return sorted(out.items())


def cmd_cancel(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from render.launch.cluster import cancel, check_run_id
    from render.launch.kube import Cluster, connect, reachable
    from render.record.destination import IndexDestination
    from render.record.index import INDEX_DIR, load_index
    from render.record.runrecord import RunRecord, now

    check_run_id(args.run_id)  # before anything connects
    ws = _workspace(args)
    api = connect(args.kubeconfig)
    with reachable(api):
        js = cancel(Cluster(api, ws.profile.namespace), args.run_id)
    print(f"deleted JobSet {js['metadata']['name']} (run {args.run_id})")
    if args.record:
        known = {r.run_id: r for r in load_index(ws.root / INDEX_DIR)}
        who = os.environ.get("GITHUB_ACTOR") or os.environ.get("USER", "?")
        rec = replace(known.get(args.run_id) or RunRecord.from_jobset(js),
                      status="cancelled", finished_at=now(), message=f"cancelled by {who}")
        delivery = IndexDestination.resolve(checkout=ws.root).deliver([rec])
        if not delivery.ok:
            raise FatalError(f"the JobSet is deleted, but the cancellation was not recorded: "
                             f"{delivery.message}")
        _say(delivery.message)
    return 0


def cmd_node_run(args: argparse.Namespace) -> int:
    from render.launch.noderun import node_run

    return node_run(Path(args.spec))


def cmd_hook(args: argparse.Namespace) -> int:
    from render.launch.noderun import hook_from_spec

    delivery = hook_from_spec(Path(args.spec), exit_code=args.exit_code,
                              output_dir=Path(args.output_dir) if args.output_dir else None,
                              started_at=args.started_at)
    return 0 if delivery.ok else 1


# -- record and browse -------------------------------------------------------------


def cmd_index(args: argparse.Namespace) -> int:
    from render.browse.sync import check_files, write_readme
    from render.record.index import INDEX_DIR

    root = Path(args.repo).resolve() / INDEX_DIR
    if args.action == "readme":
        write_readme(root)
        _say(f"wrote {root / 'README.md'}")
        return 0
    if args.action == "check":
        stale, entries = check_files(root)
        if stale:
            raise FatalError("generated outputs-index files are stale: "
                             + ", ".join(str(p) for p in stale[:10])
                             + ("..." if len(stale) > 10 else "")
                             + "; regenerate them with `ftops index readme` and commit them")
        _say(f"ok: outputs-index/README.md is current ({entries} run(s))")
        return 0
    from render.record.destination import IndexDestination
    from render.record.hook import stored_records
    from render.record.storage import open_storage
    from render.record.trust import StorageVerifier

    if not args.storage:
        raise FatalError("index reconcile needs --storage (e.g. gs://my-project-llm or ./outputs)")
    stored = stored_records(open_storage(args.storage), warn=_say)
    if args.cluster:
        stored = _finish_orphans(args, stored)
    destination = IndexDestination.resolve(remote=args.remote, branch=args.branch,
                                           checkout=Path(args.repo).resolve())
    delivery = destination.reconcile(stored, StorageVerifier())
    for line in delivery.refused:
        _say(f"ftops index reconcile: {line}")
    if not delivery.ok:
        raise FatalError(delivery.message)
    print(f"reconciled {len(stored)} stored run(s); published {len(delivery.delivered)}: "
          f"{', '.join(delivery.delivered) or '-'}"
          + (f"; {len(delivery.refused)} not landed (see above)" if delivery.refused else ""))
    return 0


def _finish_orphans(args: argparse.Namespace, stored: list[StoredRecord]
                    ) -> list[StoredRecord]:
    """`reconcile --cluster`: the stored records of runs whose JobSet ended before their
    hook finished, finished from the JobSet and written back as the run's run.json."""
    from render.launch.kube import Cluster, connect, reachable
    from render.launch.orphans import finish_orphans
    from render.record.storage import open_storage
    from render.record.trust import RUN_JSON

    ws = _workspace(args)
    api = connect(args.kubeconfig)
    with reachable(api):
        jobsets = Cluster(api, ws.profile.namespace).jobsets()
    healed = finish_orphans(stored, jobsets)
    for item in healed:
        rec = item.record
        _say(f"run {rec.run_id}: its hook did not finish; JobSet says {rec.status}")
        try:
            open_storage(rec.artifacts_uri).write_text(RUN_JSON, rec.to_json())
        except FatalError as exc:  # read-only storage: the index cannot verify it then
            _say(f"  (its run.json in storage was left as it was: {exc})")
    done = {item.record.run_id for item in healed}
    return [item for item in stored if item.record.run_id not in done] + healed


def cmd_pin_image(args: argparse.Namespace) -> int:
    from render.propose.profile import PROFILE_PATH, pin_default_image

    changed = pin_default_image(Path(args.repo), args.image)
    print(f"{PROFILE_PATH}: default_image {'set to' if changed else 'already'} {args.image}")
    return 0


def cmd_codeowners(args: argparse.Namespace) -> int:
    from render.propose import codeowners

    ws = _workspace(args)
    if args.check:
        problem = codeowners.check(ws)
        if problem is not None:
            raise FatalError(f"{problem}; regenerate it with `ftops codeowners` and commit it")
        _say(f"ok: {codeowners.CODEOWNERS_PATH} matches the dataset owners")
        return 0
    path = codeowners.write(ws)
    print(f"wrote {ws.rel(path)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    from render.browse.compare import compare, render_markdown, resolve
    from render.fsutil import atomic_write
    from render.record.index import INDEX_DIR

    root = Path(args.repo).resolve() / INDEX_DIR
    comparison = compare(resolve(root, args.runs))
    if not args.output:
        sys.stdout.write(render_markdown(comparison, svg_path=None))
        return 0
    out = Path(args.output)
    svg = out.with_suffix(".svg")
    if svg == out:
        raise FatalError(f"--output {out}: give a Markdown file name (the chart goes to "
                         f"{svg.stem}.svg beside it)")
    text = render_markdown(comparison, svg_path=quote(svg.name) if comparison.svg else None)
    try:
        if comparison.svg is not None:
            atomic_write(svg, comparison.svg.encode("utf-8"))
        atomic_write(out, text.encode("utf-8"))
    except OSError as exc:
        raise FatalError(f"cannot write {out}: {exc.strerror or exc}") from None
    _say(f"wrote {out}" + (f" and {svg}" if comparison.svg else ""))
    return 0


# -- the parser table --------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    handler: Handler
    args: tuple[Arg, ...] = ()
    description: str = ""
    one_of: tuple[Arg, ...] = ()  # a required choice of exactly one of these flags


SELECTION = (arg("paths", nargs="*", help="experiment files (default: all)"),
             arg("--files-from", metavar="FILE",
                 help="also the experiment files listed in FILE, NUL-delimited (`ftops "
                      "changes --null`; - for stdin); an empty list selects none"),
             arg("--commit", help="launching commit (default: git HEAD)"))
KUBECONFIG = arg("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, in-cluster")
NODE_SPEC = arg("--spec", required=True, help="the run spec (spec.json from the ConfigMap)")

COMMANDS: tuple[Command, ...] = (
    Command("lint", "check experiment files (schema, arguments, rules)", cmd_lint, (
        arg("paths", nargs="*", help="files to check (default: all of experiments/)"),
        arg("--format", choices=("text", "json"), default="text"),
        arg("--show", action="store_true", help="print each resolved experiment"),
        arg("--deep", action="store_true",
            help="also run LLaMA-Factory's own argument parser (training extra)"),
        arg("--index-ref", metavar="COMMIT",
            help="judge what has run by outputs-index/ at this commit, read through git "
                 "(CI: the pull request's base), not by the checkout's"),
        arg("--fix", action="store_true",
            help="first remove keys ftops owns and normalize spellings LLaMA-Factory reads "
                 "as equal (prints every change)"),
    )),
    Command("import", "a LLaMA-Factory YAML, LLaMA Board config or output folder, or "
                      "run:<run_id>, as a new experiment", cmd_import, (
        arg("source", help="file, Board output folder, or run:<run_id>"),
        arg("--dataset", help="the dataset folder (one of train.dataset), or the dataset "
                              "when the config names none"),
        arg("--model", help="model_name_or_path (a hub id or a path)"),
        arg("--name", help="experiment name (default: the source's file name)"),
        arg("--owner", help="metadata.owner (default: git config user.name)"),
        arg("--description", help="metadata.description"),
        arg("--dataset-info", help="a dataset_info.json describing the datasets to register "
                                   "in dataset.yaml"),
        arg("--data-uri", help="source.uri of a new dataset.yaml (gs://, hf://)"),
        arg("--data-revision", help="source.revision of a new dataset.yaml"),
        arg("--deepspeed", help="the DeepSpeed JSON the config refers to"),
        arg("--gpu-type", help="a GPU type of the cluster profile"),
        arg("--gpus-per-node", type=int),
        arg("--nodes", type=int),
        arg("--drop", action="append", metavar="KEY",
            help="leave this argument out (repeat for several)"),
        arg("--keep", action="store_true",
            help="write the experiment even when decisions are left"),
    )),
    Command("changes", "experiments a push or PR adds or changes (one path per line)",
            cmd_changes, (
                arg("--base", required=True,
                    help="base commit (a PR's base SHA, a push's `before`)"),
                arg("--head", required=True,
                    help="head commit (a PR's head SHA, a push's `after`)"),
                arg("--format", choices=("lines", "json"), default="lines"),
                arg("--null", "-z", action="store_true",
                    help="end each path with NUL instead of a newline (for xargs --null)"),
                arg("--github-output", action="store_true",
                    help="also append count=<N> to $GITHUB_OUTPUT (for a step's `if:`)"),
            ), description="Print the experiment files that going from --base to --head "
                           "adds or changes, directly or through a _defaults.yaml, "
                           "dataset.yaml or DeepSpeed config. Deleted experiments are not "
                           "listed."),
    Command("render", "write Kustomize overlays and built manifests", cmd_render, (
        *SELECTION,
        arg("--out", default=".rendered", help="output folder (default: .rendered)"),
        arg("--check", action="store_true",
            help="fail when --out differs from a fresh render (golden files)"),
        arg("--validate", action="store_true",
            help="validate every object against the pinned upstream schemas"),
    )),
    Command("export", "an experiment as a LLaMA-Factory YAML (--cli) or a LLaMA Board file "
                      "(--board)", cmd_export, (
        arg("experiment", help="experiments/<dataset>/<model>/<name>.yaml"),
        arg("--out", help="folder to write (default .exported/<dataset>/<model>/<name>/)"),
        arg("--data-dir", help="where the dataset files are on this machine"),
    ), one_of=(arg("--cli", action="store_true", help="for llamafactory-cli train"),
               arg("--board", action="store_true", help="for the Board's Load arguments"))),
    Command("plan", "Markdown plan: what will run, where, how long", cmd_plan, (
        *SELECTION,
        arg("--output", help="write the Markdown here instead of stdout"),
        arg("--base", metavar="COMMIT",
            help="compare with this commit (CI: the pull request's base): its "
                 "outputs-index/ says what has run, edits to index entries are flagged, "
                 "and a k8s-base/ change shows its manifest diff for every experiment"),
    )),
    Command("pr-comment", "post or update the sticky plan comment on a pull request",
            cmd_pr_comment, (
                arg("--file", required=True, help="the Markdown to post (ftops plan --output)"),
                arg("--pr", type=int, help="PR number (default: the event's pull_request)"),
                arg("--api", help="API root (default: $GITHUB_API_URL or api.github.com)"),
                arg("--author", default="github-actions[bot]",
                    help="only edit a plan comment by this login (default "
                         "github-actions[bot]; '' for any)"),
                arg("--step-summary", action="store_true",
                    help="first append the file to $GITHUB_STEP_SUMMARY (the run's page), so "
                         "the plan is visible even where the comment cannot be posted"),
            ), description="Post --file as the PR's plan comment, editing the earlier one. "
                           "Reads GITHUB_REPOSITORY, GITHUB_TOKEN, GITHUB_API_URL and "
                           "GITHUB_EVENT_PATH from the environment (the token is never an "
                           "argument)."),
    Command("launch", "run an experiment (--local: on this machine)", cmd_launch, (
        arg("experiment", help="experiments/<dataset>/<model>/<name>.yaml"),
        arg("--local", action="store_true", help="train here, no cluster"),
        arg("--work", default="outputs", help="local run folder root (default outputs)"),
        arg("--storage", help="central storage root (gs://bucket/prefix or a folder); "
                              "default: the --work folder itself"),
        arg("--nproc", type=int, default=1, help="processes (torchrun when > 1)"),
        arg("--index-remote", help="publish the record to this git remote (default: "
                                   "$FTOPS_INDEX_REMOTE, else ./outputs-index)"),
        arg("--no-progress", action="store_true", help="no progress bar"),
    )),
    Command("demo", "the local demo end to end: tiny model, lint, render, train, record",
            cmd_demo, (
                arg("--work", default="outputs",
                    help="local run folder root (default outputs)"),
                arg("--nproc", type=int, default=1),
            )),
    Command("apply", "server-side apply rendered runs to the cluster", cmd_apply, (
        *SELECTION,
        arg("--out", default=".rendered"),
        arg("--dry-run", action="store_true", help="the API server's dry run"),
        arg("--all", action="store_true", help="apply every experiment"),
        arg("--waiting", action="store_true",
            help="apply the pipeline stages (experiments with needs:) whose inputs have "
                 "succeeded and that have no run yet (the launch workflow, after index "
                 "pushes)"),
        arg("--list", action="store_true",
            help="only print the runs that would be applied (no cluster call)"),
        arg("--github-output", action="store_true",
            help="(with --list) also append count=<N> to $GITHUB_OUTPUT"),
        arg("--record", action="store_true",
            help="record a `launched` entry per new run in outputs-index"),
        KUBECONFIG,
    )),
    Command("status", "where each run stands (cluster + outputs-index)", cmd_status, (
        arg("--format", choices=("table", "json"), default="table"),
        KUBECONFIG,
    )),
    Command("cancel", "delete a run's JobSet and record the cancellation", cmd_cancel, (
        arg("run_id"),
        arg("--record", action="store_true", default=True),
        arg("--no-record", dest="record", action="store_false"),
        KUBECONFIG,
    )),
    Command("pin-image", "set the profile's default image to a digest reference (the "
                         "image workflow's proposal)", cmd_pin_image, (
        arg("image", help="<registry>/<path>@sha256:<digest>, under limits.allowed_images"),
    )),
    Command("node-run", "(in the training pod) train, then the post-run hook", cmd_node_run,
            (NODE_SPEC,)),
    Command("hook", "(end of a job) record a finished run: run.json, upload, outputs-index",
            cmd_hook, (
                NODE_SPEC,
                arg("--output-dir", help="the run's output folder (default: from the spec)"),
                arg("--exit-code", type=int, required=True, help="the trainer's exit code"),
                arg("--started-at", help="RFC 3339 start time (default: now)"),
            )),
    Command("compare", "runs side by side: config diff, metrics, loss curves (Markdown)",
            cmd_compare, (
                arg("runs", nargs="+", metavar="RUN",
                    help="a run id (or a unique prefix), or an experiment file for its "
                         "latest run; 2 to 6 of them"),
                arg("--output", help="write the Markdown here and the overlaid loss chart "
                                     "beside it (<name>.svg); default: Markdown on stdout"),
            ), description="Compare runs recorded in outputs-index/: what differs in their "
                           "resolved configs, their metrics (the best of each in bold) and "
                           "their loss curves in one chart. Markdown, for a terminal or a "
                           "pull request."),
    Command("codeowners", "generate .github/CODEOWNERS from the dataset owners",
            cmd_codeowners, (
                arg("--check", action="store_true",
                    help="fail when the committed file differs (CI)"),
            ), description="Write .github/CODEOWNERS: each experiments/<dataset>/ folder "
                           "owned by the `owners:` of its dataset.yaml, so their review is "
                           "required. --check only compares."),
    Command("index", "outputs-index: readme | check | reconcile", cmd_index, (
        arg("action", choices=("readme", "check", "reconcile")),
        arg("--storage", help="(reconcile) storage root holding run.json files"),
        arg("--remote", help="(reconcile) git remote of the index; default: "
                             "$FTOPS_INDEX_REMOTE, else ./outputs-index"),
        arg("--branch", default=None, help="(reconcile) default: $FTOPS_INDEX_BRANCH or main"),
        arg("--cluster", action="store_true",
            help="(reconcile) also finish the records of runs whose JobSet ended but whose "
                 "post-run hook never ran (reads the profile namespace's JobSets)"),
        KUBECONFIG,
    )),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftops", description="GitOps for LLaMA-Factory fine-tuning experiments.")
    parser.add_argument("--repo", default=".", help="repository root (default: .)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help,
                           description=command.description or command.help)
        for a in command.args:
            p.add_argument(*a.flags, **a.options)
        if command.one_of:
            group = p.add_mutually_exclusive_group(required=True)
            for a in command.one_of:
                group.add_argument(*a.flags, **a.options)
        p.set_defaults(func=command.handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Handler = args.func
    try:
        return func(args)
    except FatalError as exc:
        for line in exc.details:
            print(printable(line), file=sys.stderr)
        print(f"ftops: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ftops: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
