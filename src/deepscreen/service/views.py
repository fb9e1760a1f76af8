"""Rows of the scans table as the API shows them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["queued", "running", "done", "error"]
Route = Literal["pass", "review", "quarantine", "reject"]
Label = Literal["authentic", "suspicious", "manipulated", "inconclusive", "error"]


class Error(BaseModel):
    detail: str


class ScanCreated(BaseModel):
    id: str
    status: Status


class ScanSummary(BaseModel):
    id: str
    status: Status
    route: Route | None = None
    label: Label | None = None
    probability: float | None = None
    kind: str | None = None
    filename: str | None = None
    sha256: str
    size: int
    created_at: str
    finished_at: str | None = None
    reason: str | None = Field(None, description="Why it was rejected or failed, one line")
    review_state: str | None = None
    cached_from: str | None = Field(None, description="Scan whose result was reused: same bytes, same models")
    callback_state: str | None = None


class Scan(ScanSummary):
    verdict: dict[str, Any] | None = Field(None, description="The same JSON object as `deepscreen scan --json`")


class ScanPage(BaseModel):
    items: list[ScanSummary]
    next_cursor: str | None = None


class Health(BaseModel):
    status: str
    detail: str | None = None


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def summary(row) -> dict:
    return dict(id=row["id"], status=row["status"], route=row["route"], label=row["label"],
                probability=row["probability"], kind=row["kind"], filename=row["filename"], sha256=row["sha256"],
                size=row["size"], created_at=iso(row["created_at"]), finished_at=iso(row["finished_at"]),
                reason=row["reason"], review_state=row["review_state"], cached_from=row["cached_from"],
                callback_state=row["callback_state"])


def full(row) -> dict:
    verdict = json.loads(row["verdict_json"]) if row["verdict_json"] else None
    return {**summary(row), "verdict": verdict}
