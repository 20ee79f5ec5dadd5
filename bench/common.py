"""What every benchmark shares: its size (full, or the test suite's smoke run), percentiles, the CPU
time a group of processes spent, and the one line per measure that says Octoprov / reference.

A benchmark runs at full size by default (`make bench`); ``--smoke`` (or ``OCTOPROV_BENCH_SMOKE=1``)
runs it with tiny sizes, so the test suite checks that it still runs and prints its ratio lines
(tests/e2e/test_bench_smoke.py) without asserting any timing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tests.support.processes import process_table

T = TypeVar("T")

RATIO_PREFIX = "RATIO"
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def is_smoke(argv: list[str] | None = None) -> bool:
    """True for the test suite's smoke run: ``--smoke`` on the command line or OCTOPROV_BENCH_SMOKE=1."""
    return "--smoke" in (sys.argv[1:] if argv is None else argv) or os.environ.get("OCTOPROV_BENCH_SMOKE") == "1"


def sized(full: T, smoke: T) -> T:
    """``full`` for a real run, ``smoke`` for the smoke run."""
    return smoke if is_smoke() else full


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99 for p99)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def group_cpu_s(groups: Iterable[int]) -> float:
    """CPU seconds (user + system) spent so far by every live process of these process groups, or whose
    parent leads one of them (PostgreSQL's backends each lead a group of their own), with the children
    they have waited for: read before and after a run, the difference is the run's cost."""
    wanted = set(groups)
    ticks = 0
    for _, fields in process_table():
        if len(fields) > 14 and (int(fields[2]) in wanted or int(fields[1]) in wanted):
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / TICKS_PER_S


def ratio(measure: str, ours: float, reference: float, unit: str, *, goal: str = "") -> str:
    """The line `make bench` is read by: the measure, both figures and Octoprov / reference, printed."""
    value = ours / reference if reference else float("inf")
    line = (f"{RATIO_PREFIX} {measure}: octoprov {ours:.4g} {unit} / reference {reference:.4g} {unit} = "
            f"{value:.2f}x" + (f" (goal {goal})" if goal else ""))
    print(line, flush=True)
    return line
