"""Where a verdict goes: pass, review (a person looks), quarantine (held as manipulated), reject (unreadable).

The probability bands are the scan's own (settings suspicious / manipulated, as `deepscreen scan`); only the route
of `inconclusive` (no face and no speech to judge) is a policy choice of its own.
"""

from __future__ import annotations

ROUTE_OF_LABEL = {"authentic": "pass", "suspicious": "review", "manipulated": "quarantine", "error": "reject"}


def route(label: str, inconclusive_route: str = "pass") -> str:
    if label == "inconclusive":
        return inconclusive_route
    return ROUTE_OF_LABEL[label]


def review_state(route_: str) -> str | None:
    """Items a person must look at start `pending`; the rest never enter the review queue."""
    return "pending" if route_ in ("review", "quarantine") else None
