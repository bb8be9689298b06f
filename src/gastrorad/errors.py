"""Input problems and the exception that carries them.

Every check of user input reports a :class:`Problem` naming the file, row, column and
reason, so a researcher can fix a study in one pass instead of one error at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Iterable


class StatisticsWarning(RuntimeWarning):
    """A fit or statistic that R would warn about (no convergence, separation, a test that cannot be
    computed). ``gastrorad run`` records these per stage and lists them in the report, as R prints them."""


@dataclass(frozen=True)
class Problem:
    """One bad input: where it is and why it is bad.

    ``row`` is the row as a spreadsheet shows it (the header is row 1, the first patient
    row 2), or ``None`` when the problem concerns a whole file or a setting.
    """

    file: str
    reason: str
    row: int | None = None
    column: str | None = None
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column:
            where += f", column '{self.column}'"
        return f"{self.severity.upper()} {where}: {self.reason}"

    def to_dict(self) -> dict:
        return asdict(self)


class InputError(ValueError):
    """Raised when user input cannot be used; carries every problem found."""

    def __init__(self, problems: Problem | Iterable[Problem]):
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid input")
