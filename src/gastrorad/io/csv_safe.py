"""CSV files that a spreadsheet opens without running anything (OWASP "CSV injection").

A study ID such as ``=cmd|' -C calc'!A0`` written unchanged into predictions.csv becomes a
formula when a clinician opens the file in Excel or LibreOffice. Every CSV that
``gastrorad predict`` or ``gastrorad serve`` writes for download goes through
:func:`download_csv`, which prefixes a single quote to each *text* cell that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return, as OWASP recommends. Numbers are
written as numbers (``-0.52`` stays a number), so the scores read back unchanged.
"""

from __future__ import annotations

import pandas as pd

#: Characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """``value`` with a leading ``'`` if it is text that a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells (and column names) cannot start a formula."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise)
    out.columns = [neutralise(c) for c in out.columns]
    return out


def download_csv(df: pd.DataFrame, **kw) -> str:
    """``df.to_csv(index=False)`` with formula-like text cells neutralised."""
    return neutralise_frame(df).to_csv(index=False, **kw)
