"""Column helpers shared by every query that returns a pandas DataFrame.

Times are stored as float seconds since the Unix epoch and shown as
``datetime64[ns, UTC]`` columns, the same unit on pandas 2 and 3.

Examples
--------
>>> utc_column([0.0, None]).tolist()
[Timestamp('1970-01-01 00:00:00+0000', tz='UTC'), NaT]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

__all__ = ["utc_column"]


def utc_column(seconds: Iterable[Any]) -> pd.Series:
    """Epoch seconds (float, None or NaN for "no time") -> a ``datetime64[ns, UTC]`` Series."""
    if not (isinstance(seconds, pd.Series) and seconds.dtype == "float64"):
        seconds = pd.Series(list(seconds), dtype="float64")
    return pd.to_datetime(seconds, unit="s", utc=True).astype("datetime64[ns, UTC]")
