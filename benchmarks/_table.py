"""Shared by the benchmark scripts: wall-clock repeats and the printed table of medians."""

from __future__ import annotations

import time


def timed(fn, repeats: int) -> list[float]:
    """Seconds per call of fn, `repeats` times."""
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def print_table(rows: list[tuple[str, str, str]], value_width: int = 10) -> None:
    """rows of (measure, median, target) as aligned columns."""
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'median':>{value_width}}  target")
    for name, value, goal in rows:
        print(f"{name.ljust(width)}  {value:>{value_width}}  {goal}")
