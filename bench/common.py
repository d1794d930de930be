"""Shared result format for streamnb benchmarks.

Each figure is one JSON object: ``name, value, unit, baseline, ratio, target,
meets_target`` (plus ``note``). ``baseline`` is measured in the same process on
the same machine, so the ratio is what to compare across noisy machines.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None
    ratio: float | None
    target: str
    meets_target: bool
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return json.dumps(asdict(self))


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cpu, Python {sys.version.split()[0]}"


def emit(fig: Figure, sink: list[Figure] | None = None) -> Figure:
    print(fig.line(), flush=True)
    if sink is not None:
        sink.append(fig)
    return fig
