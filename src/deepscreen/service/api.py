"""The JSON API under /v1, plus health and metrics."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import select, text

from . import jobs
from .auth import ADMIN, READ, REVIEW, SUBMIT, require
from .callbacks import check_url
from .keys import Caller
from .store import audit_log, scans
from .uploads import UploadError, display_name, receive_multipart, resolve_under, store_local
from .views import Error, Health, Label, Route, Scan, ScanCreated, ScanPage, Status, full, summary

router = APIRouter()
MAX_JSON_BYTES = 16 * 1024

_auth = {401: {"model": Error, "description": "Missing, invalid or revoked API key"},
         403: {"model": Error, "description": "This key's role may not do this"}}
_missing = {404: {"model": Error, "description": "No such scan"}}

CALLBACK_URL = {"type": "string", "pattern": "^https?://[^/?#@\\s]+(/[^\\s]*)?$", "maxLength": 2000,
                "description": "POSTed the result when done (signed); its host must be on the allow-list"}
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary", "description": "The media file"},
                           "callback_url": CALLBACK_URL}}},
        "application/json": {"schema": {
            "type": "object", "required": ["path"], "additionalProperties": False,
            "properties": {"path": {"type": "string", "minLength": 1, "pattern": "^[^\\u0000]+$",
                                    "description": "A file under the configured media_root"},
                           "callback_url": CALLBACK_URL}}},
    },
}


@router.post("/v1/scans", status_code=202, response_model=ScanCreated, tags=["scans"],
             summary="Submit a file to scan (multipart upload, or a path under the media root)",
             openapi_extra={"requestBody": UPLOAD_BODY},
             responses={**_auth, 400: {"model": Error, "description": "Malformed request"},
                        404: {"model": Error, "description": "No such file under the media root"},
                        409: {"model": Error, "description": "Idempotency-Key already used for another file"},
                        413: {"model": Error, "description": "Over the upload size limit"},
                        415: {"model": Error, "description": "Not a media type the scanner reads"}})
async def submit(request: Request, caller: Caller = Depends(require(*SUBMIT)),
                 idempotency_key: str | None = Header(
                     None, min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$",
                     description="Any unique string per upload: re-sending with the same key (after a lost answer) "
                                 "returns the first scan instead of storing a second")):
    st = request.app.state
    settings = st.settings
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        stored, fields = await receive_multipart(request, settings.data_dir, settings.max_upload_bytes)
        callback_url, filename = fields.get("callback_url"), fields["filename"]
    elif ctype == "application/json":
        body = await _small_json(request)
        if settings.media_root is None:
            raise UploadError(403, "path submissions are disabled (no media_root is configured)")
        path = resolve_under(settings.media_root, body["path"])
        stored = await asyncio.to_thread(store_local, path, settings.data_dir, settings.max_upload_bytes)
        callback_url, filename = body.get("callback_url"), display_name(path.name)
    else:
        raise UploadError(415, "send multipart/form-data with a `file` field, or JSON {\"path\": ...}")
    if callback_url == "":
        raise UploadError(400, "callback_url is empty (leave the field out for no callback)")
    if callback_url is not None:
        problem = check_url(callback_url, settings.callback_hosts)
        if problem:
            # Not on the allow-list is a refusal by policy (403); a URL we cannot even parse is a bad request.
            raise UploadError(403 if "allow-list" in problem else 400, problem)
    kwargs = dict(sha256=stored.sha256, size=stored.size, kind=stored.kind, filename=filename,
                  submitted_by=caller.key_id, callback_url=callback_url, idempotency_key=idempotency_key)
    if stored.kind not in settings.allowed_kinds:
        # A readable type this service does not take: recorded and routed reject, never scanned.
        kwargs.update(status="error", route="reject", label="error",
                      reason=f"{stored.kind} files are not accepted here")
    # A re-sent upload is read and checked like any other (a bad re-send is refused as such); only then does a
    # known Idempotency-Key return the first scan, if the bytes are the same.
    scan_id, status, sha256 = await asyncio.to_thread(jobs.new_scan, st.engine, **kwargs)
    if sha256 != stored.sha256:
        raise UploadError(409, "this Idempotency-Key was used for a different file")
    return JSONResponse({"id": scan_id, "status": status}, status_code=202)


async def _small_json(request: Request) -> dict:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise UploadError(413, f"JSON body over {MAX_JSON_BYTES} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        raise UploadError(400, "body is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("path"), str) or not body["path"]:
        raise UploadError(400, "JSON body must be an object with a non-empty string `path`")
    unknown = set(body) - {"path", "callback_url"}
    if unknown:
        raise UploadError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    if body.get("callback_url") is not None and not isinstance(body["callback_url"], str):
        raise UploadError(400, "callback_url must be a string")
    if "\x00" in body["path"]:
        raise UploadError(400, "path contains a NUL character")
    return body


ISO_TIME = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|z|[+-]\d{2}:?\d{2})?$"


def _parse_time(value: str) -> float:
    """ISO 8601 only (a bare number is refused: seconds or milliseconds would be a guess)."""
    try:
        t = datetime.fromisoformat(value.replace("z", "Z"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        return t.timestamp()
    except (ValueError, OverflowError):
        raise RequestValidationError([{"type": "datetime_parsing", "loc": ("query", "since"), "input": value,
                                       "msg": "not a valid ISO 8601 date-time"}]) from None


def load_scan(engine, scan_id: str) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(select(scans).where(scans.c.id == scan_id)).mappings().first()
    return dict(row) if row else None


@router.get("/v1/scans/{scan_id}", response_model=Scan, tags=["scans"], summary="One scan: status, route, verdict",
            responses={**_auth, **_missing})
async def get_scan(scan_id: str, request: Request, caller: Caller = Depends(require(*READ))):
    row = await asyncio.to_thread(load_scan, request.app.state.engine, scan_id)
    if row is None:
        raise HTTPException(404, "no such scan")
    return JSONResponse(full(row))


@router.get("/v1/scans", response_model=ScanPage, tags=["scans"], summary="Scans, newest first, paged",
            responses=_auth)
async def list_scans(request: Request, caller: Caller = Depends(require(*READ)),
                     status: Status | None = None, route: Route | None = None, label: Label | None = None,
                     since: str | None = Query(None, pattern=ISO_TIME, description="Only scans submitted at or "
                                               "after this time (ISO 8601; UTC if no offset)",
                                               json_schema_extra={"format": "date-time"}),
                     cursor: str | None = Query(None, pattern=r"^[0-9]{1,18}$",
                                                description="next_cursor of the previous page"),
                     limit: int = Query(50, ge=1, le=500)):
    q = select(scans).order_by(scans.c.seq.desc()).limit(limit + 1)
    for col, value in ((scans.c.status, status), (scans.c.route, route), (scans.c.label, label)):
        if value is not None:
            q = q.where(col == value)
    if since is not None:
        q = q.where(scans.c.created_at >= _parse_time(since))
    if cursor is not None:
        q = q.where(scans.c.seq < int(cursor))

    def run():
        with request.app.state.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]
    rows = await asyncio.to_thread(run)
    more = len(rows) > limit
    rows = rows[:limit]
    return JSONResponse({"items": [summary(r) for r in rows],
                         "next_cursor": str(rows[-1]["seq"]) if more else None})


@router.get("/v1/scans/{scan_id}/report", tags=["scans"], summary="The HTML report of a finished scan",
            responses={**_auth, **_missing, 409: {"model": Error, "description": "Not scanned yet"},
                       200: {"description": "A self-contained HTML page", "content": {"text/html": {
                           "schema": {"type": "string"}}}}})
async def get_report(scan_id: str, request: Request, caller: Caller = Depends(require(*REVIEW))):
    return await report_response(request, scan_id)


REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"


async def report_response(request: Request, scan_id: str) -> Response:
    row = await asyncio.to_thread(load_scan, request.app.state.engine, scan_id)
    if row is None:
        raise HTTPException(404, "no such scan")
    if not row["report"]:
        raise HTTPException(409, f"no report: the scan is {row['status']}" +
                            (f" ({row['reason']})" if row["reason"] else ""))
    path = request.app.state.settings.data_dir / "reports" / row["report"]
    html = await asyncio.to_thread(path.read_text, encoding="utf-8")
    # The report has no scripts; the policy makes sure nothing in it (a crafted file name) can run or fetch.
    return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_CSP})


AUDIT_FIELDS = ("seq", "at", "actor", "scan_id", "action", "previous_state", "new_state", "comment")


def audit_rows(engine, scan_id: str | None = None) -> list[dict]:
    q = select(audit_log).order_by(audit_log.c.seq)
    if scan_id:
        q = q.where(audit_log.c.scan_id == scan_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def export_audit(rows: list[dict], fmt: str) -> Response:
    from .views import iso

    rows = [{**r, "at": iso(r["at"])} for r in rows]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=AUDIT_FIELDS)
        w.writeheader()
        w.writerows(rows)
        return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": "attachment; filename=audit.csv"})
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return Response(body, media_type="application/x-ndjson",
                    headers={"Content-Disposition": "attachment; filename=audit.jsonl"})


@router.get("/v1/audit", tags=["review"], summary="The audit log of review decisions, as CSV or JSON Lines",
            responses={**_auth, 200: {"description": "One row per decision", "content": {
                "text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": {"schema": {"type": "string"}}}}})
async def get_audit(request: Request, caller: Caller = Depends(require(*REVIEW)),
                    format: Literal["jsonl", "csv"] = "jsonl"):
    rows = await asyncio.to_thread(audit_rows, request.app.state.engine)
    return export_audit(rows, format)


@router.get("/healthz", response_model=Health, tags=["health"], summary="Liveness: the process answers")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", response_model=Health, tags=["health"], summary="Readiness: models loaded, store reachable",
            responses={503: {"model": Health, "description": "Not ready; detail says why"}})
async def readyz(request: Request):
    st = request.app.state

    def store_ok():
        with st.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    try:
        await asyncio.to_thread(store_ok)
    except Exception as err:
        return JSONResponse({"status": "not ready", "detail": f"store unreachable: {type(err).__name__}"}, 503)
    if st.supervisor is not None and not st.supervisor.ready():
        return JSONResponse({"status": "not ready", "detail": "no scan worker has loaded its models yet"}, 503)
    return {"status": "ok"}


@router.get("/metrics", tags=["health"], summary="Prometheus metrics",
            responses={**_auth, 200: {"description": "Prometheus text format",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(request: Request, caller: Caller = Depends(require(*ADMIN))):
    from prometheus_client import CONTENT_TYPE_LATEST

    from .metrics import render

    return Response(await asyncio.to_thread(render, request.app.state.engine), media_type=CONTENT_TYPE_LATEST)
