"""Subcommands beyond lint. Each handler parses nothing itself: it calls the module that
does the work and prints the result."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from render.errors import FatalError
from render.experiment import Workspace
from render.runspec import RunSpec, git_commit


def load_specs(args: argparse.Namespace) -> tuple[Workspace, list[RunSpec]]:
    """Lint the selected experiments; refuse to go on with any problem."""
    from render.lint import lint

    ws = Workspace(Path(args.repo))
    paths = [Path(p) for p in args.paths] if args.paths else None
    result = lint(ws, paths)
    if not result.ok:
        for finding in result.findings:
            print(finding.format(), file=sys.stderr)
        raise FatalError(f"{len(result.findings)} lint problem(s); fix them first "
                         "(`ftops lint` shows them again)")
    commit = args.commit or git_commit(ws.root)
    return ws, [RunSpec(e, commit) for e in sorted(result.experiments, key=lambda e: e.path)]


def cmd_render(args: argparse.Namespace) -> int:
    from render.overlay import check_tree, render

    ws, specs = load_specs(args)
    out = Path(args.out) if Path(args.out).is_absolute() else ws.root / args.out
    if args.check:
        drift = check_tree(specs, out, ws.root)
        for name in drift:
            print(f"drift: {out.name}/{name}")
        if drift:
            commit = specs[0].commit if specs else "<sha>"
            raise FatalError(f"{len(drift)} rendered file(s) differ from {args.out}; "
                             f"regenerate with: ftops render --commit {commit} --out {args.out}")
        print(f"ok: {len(specs)} experiment(s) render exactly as in {args.out}", file=sys.stderr)
        return 0
    rendered = render(specs, out, ws.root)
    if args.validate:
        from render.validate import validate_manifests

        problems = validate_manifests([d for r in rendered for d in r.manifests])
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            raise FatalError(f"{len(problems)} rendered object(s) fail validation")
    for r in rendered:
        print(f"{r.spec.exp.path} -> {ws.rel(r.folder)}/ (run {r.spec.run_id}, "
              f"{len(r.manifests)} objects)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from render.plan import plan

    ws, specs = load_specs(args)
    text = plan(ws, specs)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _one_experiment(args: argparse.Namespace) -> tuple[Workspace, Any]:
    from render.lint import lint

    ws = Workspace(Path(args.repo))
    result = lint(ws, [Path(args.experiment)])
    if not result.ok or len(result.experiments) != 1:
        for finding in result.findings:
            print(finding.format(), file=sys.stderr)
        raise FatalError(f"{args.experiment}: fix the lint problems above first"
                         if result.findings else f"{args.experiment} is not an experiment file")
    return ws, result.experiments[0]


def _print_result(result: Any, ws: Workspace) -> None:
    rec = result.record
    m = rec.metrics
    loss = "n/a" if m.final_train_loss is None else f"{m.final_train_loss:.4f}"
    print(f"run {rec.run_id}: {rec.status} (exit {rec.exit_code}) in "
          f"{rec.duration_s if rec.duration_s is not None else '?'} s; final train loss {loss}")
    print(f"  artifacts: {rec.artifacts_uri}")
    if rec.loss_curve:
        print(f"  loss curve: {rec.loss_curve}")
    if rec.tracker_url:
        print(f"  tracker: {rec.tracker_url}")
    print(f"  index: {result.message}")


def cmd_launch(args: argparse.Namespace) -> int:
    if not args.local:
        raise FatalError("cluster launches happen on merge (the launch workflow runs "
                         "`ftops apply`); use --local to run on this machine")
    from render.local import launch_local

    ws, exp = _one_experiment(args)
    result = launch_local(ws, exp, work=Path(args.work), storage_root=args.storage,
                          nproc=args.nproc, progress=not args.no_progress,
                          index_dir=None if args.index_remote else ws.root / "outputs-index",
                          index_remote=args.index_remote)
    _print_result(result, ws)
    return 0 if result.record.status == "succeeded" else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from render.demo import make_demo_assets
    from render.local import AlreadyDone, launch_local
    from render.overlay import render

    ws = Workspace(Path(args.repo))
    args.experiment = "experiments/demo/tiny-llama/sft_lora_v1.yaml"
    print("1/4 making the tiny demo model and data in .demo/ (offline)", file=sys.stderr)
    make_demo_assets(ws.root / ".demo")
    print(f"2/4 lint {args.experiment}", file=sys.stderr)
    ws, exp = _one_experiment(args)
    spec = RunSpec(exp, git_commit(ws.root))
    (rendered,) = render([spec], ws.root / ".rendered", ws.root)
    print(f"3/4 rendered the cluster manifests to {ws.rel(rendered.folder)}/", file=sys.stderr)
    print("4/4 training locally with llamafactory-cli, then the post-run hook",
          file=sys.stderr)
    try:
        result = launch_local(ws, exp, work=Path(args.work), nproc=args.nproc,
                              index_dir=ws.root / "outputs-index")
    except AlreadyDone as done:
        print(f"already done: {done}", file=sys.stderr)
        return 0
    _print_result(result, ws)
    rec = result.record
    print(f"  browse: outputs-index/{rec.dataset}/{rec.model}/README.md "
          "(and the map in outputs-index/README.md)")
    return 0 if result.record.status == "succeeded" else 1


def cmd_node_run(args: argparse.Namespace) -> int:
    from render.noderun import node_run

    return node_run(Path(args.spec))


def cmd_hook(args: argparse.Namespace) -> int:
    import yaml

    from render.hook import load_identity, now
    from render.noderun import run_hook

    identity = load_identity(Path(args.spec))
    output_dir = Path(args.output_dir or identity["output_dir"])
    config = Path(identity.get("train_config", ""))
    train_cfg = yaml.safe_load(config.read_text(encoding="utf-8")) if config.is_file() else {}
    result = run_hook(identity, output_dir, exit_code=args.exit_code,
                      started_at=args.started_at or now(), train_cfg=train_cfg or {})
    return 0 if result.published or not os.environ.get("FTOPS_INDEX_REMOTE") else 1


def cmd_index(args: argparse.Namespace) -> int:
    from render import index

    ws_root = Path(args.repo).resolve()
    root = ws_root / "outputs-index"
    if args.action == "readme":
        index.write_readme(root)
        print(f"wrote {root / 'README.md'}", file=sys.stderr)
        return 0
    if args.action == "check":
        stale = index.stale_files(root)
        if stale:
            raise FatalError("generated outputs-index files are stale: "
                             + ", ".join(str(p) for p in stale[:10])
                             + ("..." if len(stale) > 10 else "")
                             + "; regenerate them with `ftops index readme` and commit them")
        print(f"ok: outputs-index/README.md is current ({len(index.load_index(root))} "
              "run(s))", file=sys.stderr)
        return 0
    from render.record import RunRecord
    from render.storage import open_storage

    if not args.storage:
        raise FatalError("index reconcile needs --storage (e.g. gs://my-project-llm or ./outputs)")
    storage = open_storage(args.storage)
    stored = []
    for key in storage.list_keys("experiments/", "/run.json"):
        text = storage.read_text(key)
        try:
            stored.append(RunRecord.from_json(text or ""))
        except (ValueError, TypeError):
            print(f"ftops index reconcile: skipping unreadable {storage.uri(key)}",
                  file=sys.stderr)
    if args.remote:
        from render.publish import reconcile

        published = reconcile(stored, remote=args.remote, branch=args.branch)
    else:
        known = {(r.run_id, r.status) for r in index.load_index(root)} if root.exists() else set()
        published = []
        for rec in stored:
            if (rec.run_id, rec.status) not in known:
                index.write_entry(root, rec)
                published.append(rec.run_id)
        index.write_readme(root)
    print(f"reconciled {len(stored)} stored run(s); published {len(published)}: "
          f"{', '.join(published) or '-'}")
    return 0


def _record_index(ws: Workspace, records: list[Any]) -> str:
    """Publish records to $FTOPS_INDEX_REMOTE (CI), else write ./outputs-index."""
    if not records:
        return "nothing to record"
    remote = os.environ.get("FTOPS_INDEX_REMOTE")
    if remote:
        from render.publish import publish

        publish(records, remote=remote, branch=os.environ.get("FTOPS_INDEX_BRANCH", "main"))
        return f"recorded {len(records)} run(s) in the index remote"
    from render.index import write_entry, write_readme

    root = ws.root / "outputs-index"
    for rec in records:
        write_entry(root, rec)
    write_readme(root)
    return f"recorded {len(records)} run(s) in {ws.rel(root)}/"


def _index_records(ws: Workspace) -> list[Any]:
    from render.index import load_index

    root = ws.root / "outputs-index"
    return load_index(root) if root.is_dir() else []


def cmd_apply(args: argparse.Namespace) -> int:
    from render.cluster import Cluster, apply, connect
    from render.hook import now
    from render.overlay import render
    from render.record import RunRecord

    if not args.paths and not args.all:
        raise FatalError("name the experiments to apply (the launch workflow passes what "
                         "`ftops changes` selected), or pass --all")
    ws, specs = load_specs(args)
    rendered = render(specs, ws.root / args.out, ws.root)
    cluster = Cluster(connect(args.kubeconfig), ws.profile.namespace)
    indexed = {r.run_id for r in _index_records(ws)}
    results = apply(cluster, [(r.spec.run_id, r.spec.exp.path, r.manifests) for r in rendered],
                    dry_run=args.dry_run, indexed_run_ids=indexed)
    for res in results:
        print(f"{res.action:9} {res.jobset}  ({res.experiment_path}, run {res.run_id})")
    if args.record and not args.dry_run:
        by_id = {r.spec.run_id: r.spec for r in rendered}
        records = []
        for res in results:
            if res.action != "created":
                continue
            ident = by_id[res.run_id].identity()
            records.append(RunRecord(
                **{k: ident[k] for k in ("run_id", "experiment", "experiment_path", "dataset",
                                         "model", "config_hash", "git_sha", "image", "owner",
                                         "nodes", "gpus_per_node", "gpu_type", "jobset",
                                         "artifacts_uri", "hyperparameters")},
                mode="cluster", status="launched", started_at=now()))
        print(_record_index(ws, records), file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from render.cluster import Cluster, connect, format_table, status

    ws = Workspace(Path(args.repo))
    cluster = Cluster(connect(args.kubeconfig), ws.profile.namespace)
    rows = status(cluster, _index_records(ws))
    if args.format == "json":
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(format_table(rows))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from render.cluster import Cluster, cancel, connect
    from render.hook import now
    from render.record import RunRecord

    ws = Workspace(Path(args.repo))
    cluster = Cluster(connect(args.kubeconfig), ws.profile.namespace)
    js = cancel(cluster, args.run_id)
    print(f"deleted JobSet {js['metadata']['name']} (run {args.run_id})")
    if args.record:
        known = {r.run_id: r for r in _index_records(ws)}
        ann = js["metadata"].get("annotations") or {}
        labels = js["metadata"].get("labels") or {}
        rec = known.get(args.run_id) or RunRecord(
            run_id=args.run_id, experiment=labels.get("ftops.dev/experiment", ""),
            experiment_path=ann.get("ftops.dev/experiment-path", ""),
            dataset=labels.get("ftops.dev/dataset", ""), model=labels.get("ftops.dev/model", ""),
            config_hash=ann.get("ftops.dev/config-hash", ""),
            git_sha=ann.get("ftops.dev/git-sha", ""), owner=ann.get("ftops.dev/owner", ""),
            jobset=js["metadata"]["name"], mode="cluster",
            artifacts_uri=ann.get("ftops.dev/artifacts", ""))
        rec.status, rec.finished_at = "cancelled", now()
        who = os.environ.get("GITHUB_ACTOR") or os.environ.get("USER", "?")
        rec.message = f"cancelled by {who}"
        print(_record_index(ws, [rec]), file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from render.propose.importer import Options, import_config
    from render.propose.importsrc import read_source

    ws = Workspace(Path(args.repo))
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
    print(f"ftops import: {src.label} ({src.kind})", file=sys.stderr)
    for line in res.lines:
        print(f"  {line}", file=sys.stderr)
    chosen = [d for d in res.decisions if not d.blocking]
    if chosen:
        print("chosen for you (the option changes it):", file=sys.stderr)
        for d in chosen:
            print(f"  - {d.format()}", file=sys.stderr)
    if res.blocking:
        kept = f"wrote {res.path} as it is (--keep)" if res.path else \
            "nothing written; settle each and run the same command again (or --keep)"
        print(f"left to decide ({kept}):", file=sys.stderr)
        for d in res.blocking:
            print(f"  - {d.format()}", file=sys.stderr)
        return 1
    for path in res.written:
        if path != res.path:
            print(f"wrote {path}")
    print(f"wrote {res.path} (lints clean)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from render.propose import exporter

    ws, exp = _one_experiment(args)
    folder = Path(args.out) if args.out else exporter.default_folder(ws, exp)
    data_dir = Path(args.data_dir) if args.data_dir else None
    if args.board:
        res = exporter.export_board(ws, exp, folder, data_dir=data_dir)
    else:
        res = exporter.export_cli(ws, exp, folder, data_dir=data_dir)
    for line in res.warnings:
        print(f"ftops export: {line}", file=sys.stderr)
    for path in res.files:
        print(f"wrote {ws.rel(path)}")
    if not args.board:
        print(f"run it: {res.command}")
    return 0


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", help="experiment files (default: all)")
    p.add_argument("--commit", help="launching commit (default: git HEAD)")


def register(sub: Any) -> None:
    p = sub.add_parser("render", help="write Kustomize overlays and built manifests")
    _selection(p)
    p.add_argument("--out", default=".rendered", help="output folder (default: .rendered)")
    p.add_argument("--check", action="store_true",
                   help="fail when --out differs from a fresh render (golden files)")
    p.add_argument("--validate", action="store_true",
                   help="validate every object against the pinned upstream schemas")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("plan", help="Markdown plan: what will run, where, how long")
    _selection(p)
    p.add_argument("--output", help="write the Markdown here instead of stdout")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("launch", help="run an experiment (--local: on this machine)")
    p.add_argument("experiment", help="experiments/<dataset>/<model>/<name>.yaml")
    p.add_argument("--local", action="store_true", help="train here, no cluster")
    p.add_argument("--work", default="outputs", help="local run folder root (default outputs)")
    p.add_argument("--storage", help="central storage root (gs://bucket/prefix or a folder); "
                                     "default: the --work folder itself")
    p.add_argument("--nproc", type=int, default=1, help="processes (torchrun when > 1)")
    p.add_argument("--index-remote", help="publish the record to this git remote instead "
                                          "of writing ./outputs-index")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_launch)

    p = sub.add_parser("import", help="a LLaMA-Factory YAML, LLaMA Board config or output "
                                      "folder, or run:<run_id>, as a new experiment")
    p.add_argument("source", help="file, Board output folder, or run:<run_id>")
    p.add_argument("--dataset", help="the dataset folder (one of train.dataset), or the "
                                     "dataset when the config names none")
    p.add_argument("--model", help="model_name_or_path (a hub id or a path)")
    p.add_argument("--name", help="experiment name (default: the source's file name)")
    p.add_argument("--owner", help="metadata.owner (default: git config user.name)")
    p.add_argument("--description", help="metadata.description")
    p.add_argument("--dataset-info", help="a dataset_info.json describing the datasets to "
                                          "register in dataset.yaml")
    p.add_argument("--data-uri", help="source.uri of a new dataset.yaml (gs://, hf://)")
    p.add_argument("--data-revision", help="source.revision of a new dataset.yaml")
    p.add_argument("--deepspeed", help="the DeepSpeed JSON the config refers to")
    p.add_argument("--gpu-type", help="a GPU type of the cluster profile")
    p.add_argument("--gpus-per-node", type=int)
    p.add_argument("--nodes", type=int)
    p.add_argument("--drop", action="append", metavar="KEY",
                   help="leave this argument out (repeat for several)")
    p.add_argument("--keep", action="store_true",
                   help="write the experiment even when decisions are left")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="an experiment as a LLaMA-Factory YAML (--cli) or a "
                                      "LLaMA Board file (--board)")
    p.add_argument("experiment", help="experiments/<dataset>/<model>/<name>.yaml")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--cli", action="store_true", help="for llamafactory-cli train")
    how.add_argument("--board", action="store_true", help="for the Board's Load arguments")
    p.add_argument("--out", help="folder to write (default .exported/<dataset>/<model>/"
                                 "<name>/)")
    p.add_argument("--data-dir", help="where the dataset files are on this machine")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="the local demo end to end: tiny model, lint, render, "
                                    "train, record")
    p.add_argument("--work", default="outputs", help="local run folder root (default outputs)")
    p.add_argument("--nproc", type=int, default=1)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("apply", help="server-side apply rendered runs to the cluster")
    _selection(p)
    p.add_argument("--out", default=".rendered")
    p.add_argument("--dry-run", action="store_true", help="the API server's dry run")
    p.add_argument("--all", action="store_true", help="apply every experiment")
    p.add_argument("--record", action="store_true",
                   help="record a `launched` entry per new run in outputs-index")
    p.add_argument("--kubeconfig")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("status", help="where each run stands (cluster + outputs-index)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--kubeconfig")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("cancel", help="delete a run's JobSet and record the cancellation")
    p.add_argument("run_id")
    p.add_argument("--record", action="store_true", default=True)
    p.add_argument("--no-record", dest="record", action="store_false")
    p.add_argument("--kubeconfig")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("node-run", help="(in the training pod) train, then the post-run hook")
    p.add_argument("--spec", required=True, help="the run spec (run.json from the ConfigMap)")
    p.set_defaults(func=cmd_node_run)

    p = sub.add_parser("hook", help="(end of a job) record a finished run: run.json, "
                                    "upload, outputs-index")
    p.add_argument("--spec", required=True, help="the run spec (run.json from the ConfigMap)")
    p.add_argument("--output-dir", help="the run's output folder (default: from the spec)")
    p.add_argument("--exit-code", type=int, required=True, help="the trainer's exit code")
    p.add_argument("--started-at", help="RFC 3339 start time (default: now)")
    p.set_defaults(func=cmd_hook)

    from render import changes, github

    changes.register(sub)
    github.register(sub)

    p = sub.add_parser("index", help="outputs-index: readme | check | reconcile")
    p.add_argument("action", choices=("readme", "check", "reconcile"))
    p.add_argument("--storage", help="(reconcile) storage root holding run.json files")
    p.add_argument("--remote", help="(reconcile) git remote of the index; default: write "
                                    "./outputs-index")
    p.add_argument("--branch", default="main")
    p.set_defaults(func=cmd_index)
