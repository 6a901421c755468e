"""CSV cells that a spreadsheet would run as formulas, neutralised.

Excel, LibreOffice and Google Sheets read a cell starting with ``=``, ``+``, ``-`` or ``@`` (and a
tab or carriage return before one) as a formula, so a file named ``=HYPERLINK(...).png`` listed in
``counts.csv`` would run on opening. Such text values get the usual leading ``'`` (OWASP's "CSV
injection" advice); numbers, negative ones included, are written as they are.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

__all__ = ["FORMULA_STARTS", "safe_cell", "safe_rows"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_rows(rows: Iterable[Mapping[str, Any]], columns: Collection[str]) -> list[dict[str, Any]]:
    """Rows of a ``csv.DictWriter`` with :func:`safe_cell` applied to ``columns``: those holding names
    from outside (file names, case ids); our own values (``--pixel-size`` as a scale source) stay."""
    return [{key: safe_cell(value) if key in columns else value for key, value in row.items()} for row in rows]
