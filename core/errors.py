"""Errors a user can cause, and the findings that checks report.

A `UserError` ends the command with one line on stderr (naming the file and the fix) and a non-zero
exit code; the CLI never shows a traceback for it. Anything else that escapes is a bug.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


class UserError(Exception):
    """A problem with the user's input: bad path, unreadable file, wrong config.

    Args:
        message: one line that says what is wrong and what to do.
        path: the file or folder concerned, if any; it is named in the printed line.
        exit_code: 2 for usage and I/O problems (default), 1 for a failed check.
    """

    def __init__(self, message: str, path: str | None = None, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.exit_code = exit_code

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        return f"error: {self.path}: {text}" if self.path else f"error: {text}"


@dataclass(frozen=True)
class Finding:
    """One result of a check: a stable id, `error` or `warning`, a message and the path concerned."""

    id: str
    severity: str
    message: str
    path: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def error(id: str, message: str, path: str = "") -> Finding:
    return Finding(id=id, severity="error", message=message, path=str(path))


def warning(id: str, message: str, path: str = "") -> Finding:
    return Finding(id=id, severity="warning", message=message, path=str(path))


def exit_code_for(findings: list[Finding]) -> int:
    """0 when no finding is an error, 1 otherwise (warnings do not fail a check)."""
    return EXIT_FINDINGS if any(f.severity == "error" for f in findings) else EXIT_OK
