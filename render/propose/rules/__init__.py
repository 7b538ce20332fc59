"""Lint rules beyond the schema, one module per family.

A rule is a function `(experiment, context) -> Iterable[Finding]`; file-level rules
(layout, secrets) take paths instead. `EXPERIMENT_RULES` lists them in report order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from render.errors import Finding
from render.propose.experiment import Experiment
from render.propose.rules import (
    consistency,
    deepspeed,
    evaluate,
    history,
    image,
    names,
    pipeline,
    resources,
    secrets,
    train,
)
from render.propose.rules.context import Context

Rule = Callable[[Experiment, Context], Iterable[Finding]]

EXPERIMENT_RULES: tuple[Rule, ...] = (
    names.check,
    consistency.check,
    train.check,
    resources.check,
    resources.check_size,
    image.check,
    deepspeed.check,
    evaluate.check,
    pipeline.check,
    secrets.check_fields,
    history.check_immutable,
    history.check_duplicates,
)

__all__ = ["EXPERIMENT_RULES", "Context", "Rule"]
