"""The one error type a user ever sees, and the finding type lint reports."""

from __future__ import annotations

from dataclasses import dataclass


class FatalError(RuntimeError):
    """A problem the user can fix; the CLI prints it without a traceback and exits 1.

    `details` are lines printed before the message (e.g. each lint finding)."""

    def __init__(self, message: str, details: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True, order=True)
class Finding:
    """One problem in one file, with its location and how to fix it."""

    file: str
    line: int
    col: int
    path: str  # JSON path, e.g. "$.train.learning_rate"
    message: str
    hint: str = ""
    rule: str = ""

    def format(self) -> str:
        text = f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
            "rule": self.rule,
        }
