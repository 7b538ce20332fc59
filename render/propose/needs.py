"""Pipelines: an experiment that starts from an earlier experiment's output.

    needs:
      - experiment: experiments/ultrafeedback/llama-3.1-8b-instruct/sft_lora_v1.yaml
        run: latest-succeeded        # or a run id
        as: adapter_name_or_path     # or model_name_or_path (a full/freeze run's output)

A stage is a separate experiment, hence a separate JobSet, resolved when it is planned
or applied, not a second ReplicatedJob with JobSet `dependsOn`: Kueue admits a JobSet
as a whole, so a DPO stage in the SFT stage's JobSet would hold its GPUs idle while
SFT runs, a JobSet restart would re-run SFT, and `waitForPodsReady` does not understand
`dependsOn` (kueue#6796). One experiment stays one run id, output folder and record.

`resolve(exp, runs_of)` reads the needed experiment's runs from outputs-index/ (the
one `runs_of` gives: the checkout's, or the base commit's in CI) and returns the
experiment with `inputs` set: each need resolved to a succeeded run (its run id and
artifacts URI) or waiting, with the reason (no run yet, the latest one failed, the
named run is not recorded or not succeeded). The resolved runs are part of the launch
identity (`Experiment.launch_identity`): a new input is a new run. The render puts the
input's output folder, as the pod sees central storage, into the train config
(`RunSpec.input_paths`); `ftops apply` creates no stage that waits, and
`ftops apply --waiting` (the launch workflow, on index pushes and hourly) creates the
stages whose inputs have succeeded since.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

from render.propose.experiment import Experiment
from render.record.runrecord import RunRecord

LATEST = "latest-succeeded"
AS_CHOICES = ("adapter_name_or_path", "model_name_or_path")

RunsOf = Callable[[str, str, str], list[RunRecord]]  # (dataset, model, name) -> runs


@dataclass(frozen=True)
class Input:
    """One need of a stage, resolved (run_id set) or waiting (reason set)."""

    experiment: str  # experiments/<dataset>/<model>/<name>.yaml
    run: str  # latest-succeeded or a run id, as written
    as_: str  # the train argument it becomes
    run_id: str = ""
    artifacts_uri: str = ""
    waiting: str = ""  # why it cannot start yet

    def identity(self) -> dict[str, Any]:
        """What the launch identity keeps of it."""
        if self.waiting:
            return {"experiment": self.experiment, "as": self.as_, "waiting": True}
        return {"experiment": self.experiment, "as": self.as_, "run_id": self.run_id,
                "artifacts_uri": self.artifacts_uri}

    def record(self) -> dict[str, Any]:
        """What the stage's run record keeps of it."""
        return {"experiment": self.experiment, "run": self.run, "as": self.as_,
                "run_id": self.run_id, "artifacts_uri": self.artifacts_uri}


def declared(exp: Experiment) -> list[tuple[int, dict[str, Any]]]:
    """The well-formed `needs:` entries (index, entry); the schema reports the rest."""
    raw = exp.merged.get("needs")
    if not isinstance(raw, list):
        return []
    return [(i, n) for i, n in enumerate(raw)
            if isinstance(n, dict) and isinstance(n.get("experiment"), str)
            and n.get("as") in AS_CHOICES and isinstance(n.get("run", LATEST), str)]


def split(path: str) -> tuple[str, str, str] | None:
    parts = PurePosixPath(path).parts
    if len(parts) != 4 or parts[0] != "experiments" or not parts[3].endswith(".yaml"):
        return None
    return parts[1], parts[2], parts[3][: -len(".yaml")]


def _when(r: RunRecord) -> tuple[str, str]:
    return (str(r.finished_at or r.started_at or ""), r.run_id)


def resolve_one(path: str, run: str, as_: str, runs_of: RunsOf) -> Input:
    key = split(path)
    if key is None:
        return Input(path, run, as_, waiting=f"{path} is not an experiment path")
    runs = [r for r in runs_of(*key) if r.experiment_path in ("", path)]
    if run == LATEST:
        done = [r for r in runs if r.status == "succeeded"]
        if done:
            best = max(done, key=_when)
            return Input(path, run, as_, best.run_id, best.artifacts_uri)
        if not runs:
            return Input(path, run, as_, waiting=f"waits for {path}: it has no run yet")
        latest = max(runs, key=_when)
        if latest.status in ("failed", "cancelled"):
            return Input(path, run, as_, waiting=(
                f"waits for {path}: its latest run {latest.run_id} {latest.status}, and "
                "none has succeeded (fix it and re-run that stage, or name a run)"))
        return Input(path, run, as_, waiting=(
            f"waits for {path}: run {latest.run_id} is {latest.status}"))
    named = next((r for r in runs if r.run_id == run), None)
    if named is None:
        return Input(path, run, as_, waiting=f"waits for run {run} of {path}: not recorded")
    if named.status != "succeeded":
        return Input(path, run, as_, waiting=(
            f"waits for run {run} of {path}: it is {named.status}"
            + (" and will not succeed: name another run" if named.status in
               ("failed", "cancelled") else "")))
    return Input(path, run, as_, named.run_id, named.artifacts_uri)


def resolve(exp: Experiment, runs_of: RunsOf) -> Experiment:
    """`exp` with its `needs:` resolved against the index `runs_of` reads."""
    entries = declared(exp)
    if not entries:
        return exp
    inputs = tuple(resolve_one(n["experiment"], str(n.get("run", LATEST)), n["as"], runs_of)
                   for _, n in entries)
    return replace(exp, inputs=inputs)
