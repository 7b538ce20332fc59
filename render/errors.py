"""The one error type a user ever sees, the finding type lint reports, and `printable`:
what a user wrote is echoed with its control characters escaped, so it never starts a
line of its own (GitHub Actions runs a log line `::error ...` as a workflow command) nor
moves a terminal's cursor."""

from __future__ import annotations

import re
from dataclasses import dataclass

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """`text` on one line: each control character as its Python escape (\\n, \\x1b)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


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
    severity: str = "error"  # "warning": reported, but lint still passes

    def format(self) -> str:
        """One line: file:line:col: $.path: message (hint), control characters escaped."""
        text = f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}"
        if self.severity != "error":
            text = f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.path}: " \
                   f"{self.message}"
        return printable(f"{text} ({self.hint})" if self.hint else text)

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
            "rule": self.rule,
            "severity": self.severity,
        }
