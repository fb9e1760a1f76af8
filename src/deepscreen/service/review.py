"""The review page: server-rendered HTML, no scripts. A reviewer logs in with a key (into a signed session cookie),
sees the queue of items in review and quarantine, opens one (with its report), and decides: confirmed fake, false
alarm (released) or escalate, with a comment. Every decision is appended to the audit log."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from html import escape

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import insert, select, update

from ..verdict import percent
from .api import audit_rows, export_audit, load_scan, report_response
from .auth import REVIEW, csrf_ok, csrf_token
from .keys import Caller, active_caller, lookup
from .store import audit_log, scans
from .views import iso

router = APIRouter(prefix="/review", include_in_schema=False)
COOKIE = "deepscreen_session"
SESSION_S = 8 * 3600
DECISIONS = {"confirmed_fake": "confirmed_fake", "false_alarm": "released", "escalate": "escalated"}
OPEN_STATES = ("pending", "escalated")

CSS = """body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#202124}
main{max-width:1100px;margin:0 auto;padding:16px}header{background:#202124;color:#fff;padding:8px 16px;
display:flex;gap:16px;align-items:center}header a{color:#fff}header form{margin-left:auto}
table{border-collapse:collapse;width:100%;background:#fff}th,td{padding:6px 8px;border-bottom:1px solid #eee;
text-align:left;vertical-align:middle}img.thumb{width:64px;height:64px;object-fit:cover;border-radius:4px}
.route-quarantine{color:#d93025;font-weight:600}.route-review{color:#b06000;font-weight:600}
.card{background:#fff;border-radius:8px;padding:12px 16px;margin:12px 0}iframe{width:100%;height:900px;border:0;
background:#fff}.err{color:#b3261e}.muted{color:#5f6368}textarea{width:100%;min-height:4em}button{margin-right:8px;padding:6px 12px}"""


def _page(title: str, body: str, caller: Caller | None = None, csrf: str = "") -> HTMLResponse:
    nav = ""
    if caller:
        nav = (f'<a href="/review">Queue</a><a href="/review/audit">Audit log</a>'
               f'<span>{escape(caller.name)} · {escape(caller.role)} key {escape(caller.key_id)}</span>'
               f'<form method="post" action="/review/logout"><input type="hidden" name="csrf" value="{csrf}">'
               f'<button type="submit">Log out</button></form>')
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>'
            f'<body><header><strong>deepscreen review</strong>{nav}</header><main>{body}</main></body></html>')
    # No scripts anywhere on these pages; the policy keeps it so even if a value slipped through escaping.
    return HTMLResponse(html, headers={"Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                                       "img-src 'self' data:; script-src 'none'; frame-ancestors 'none'",
                                       "Cache-Control": "no-store"})


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app.state.settings.secret("session"), salt="review-session")


def _session(request: Request) -> tuple[Caller, str] | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(request).loads(raw, max_age=SESSION_S)
    except BadSignature:
        return None
    caller = active_caller(request.app.state.engine, data.get("k", ""))  # a revoked key ends its sessions
    if caller is None or caller.role not in REVIEW:
        return None
    return caller, data["s"]


def _csrf(request: Request, sid: str) -> str:
    return csrf_token(request.app.state.settings.secret("session"), sid)


def _login_redirect() -> RedirectResponse:
    return RedirectResponse("/review/login", status_code=303)


def _reviewer(request: Request) -> tuple[Caller, str]:
    """The logged-in reviewer and their session id; anyone else is sent to the login page (303)."""
    sess = _session(request)
    if sess is None:
        raise HTTPException(303, "log in first", headers={"Location": "/review/login"})
    return sess


# Every page but the login form's takes this: the route runs only for a reviewer with a live session.
Reviewer = Annotated[tuple[Caller, str], Depends(_reviewer)]


LOGIN_COOKIE = "deepscreen_login"


@router.get("/login")
async def login_form(request: Request, error: str = ""):
    msg = f'<p class="err">{escape(error)}</p>' if error else ""
    # Login CSRF: the form carries a token that must match a cookie set with it (double submit), so another site
    # cannot log a reviewer into a session of its choosing.
    token = secrets.token_hex(16)
    resp = _page("Log in", f'<div class="card"><h1>Log in</h1>{msg}<form method="post" action="/review/login">'
                 f'<input type="hidden" name="csrf" value="{token}">'
                 '<label>API key (review or admin role)<br><input type="password" name="key" id="key" size="60" '
                 'autocomplete="off" required></label> <button type="submit" id="login">Log in</button>'
                 '</form></div>')
    resp.set_cookie(LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict", path="/review")
    return resp


@router.post("/login")
async def login(request: Request):
    form = await request.form()
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, str(form.get("csrf", ""))):
        resp = await login_form(request, "The login form expired; please try again.")
        resp.status_code = 403
        return resp
    caller = await asyncio.to_thread(lookup, request.app.state.engine, str(form.get("key", "")).strip())
    if caller is None:
        resp = await login_form(request, "That key is not valid (or was revoked).")
        resp.status_code = 401
        return resp
    if caller.role not in REVIEW:
        resp = await login_form(request, f"A {caller.role} key cannot open the review page.")
        resp.status_code = 403
        return resp
    cookie = _serializer(request).dumps({"k": caller.key_id, "s": secrets.token_hex(16)})
    resp = RedirectResponse("/review", status_code=303)
    resp.set_cookie(COOKIE, cookie, max_age=SESSION_S, httponly=True, samesite="strict",
                    secure=request.url.scheme == "https", path="/review")
    return resp


@router.post("/logout")
async def logout(request: Request):
    sess = _session(request)
    form = await request.form()
    if sess and not csrf_ok(request.app.state.settings.secret("session"), sess[1], form.get("csrf")):
        raise HTTPException(403, "bad CSRF token")
    resp = _login_redirect()
    resp.delete_cookie(COOKIE, path="/review")
    return resp


def _age(t: float) -> str:
    s = max(0, int(time.time() - t))
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s // n} {unit}"
    return f"{s} s"


def top_cue(verdict_json: str | None, reason: str | None) -> str:
    """The strongest piece of evidence, in words; else the summary."""
    import json

    if not verdict_json:
        return reason or ""
    v = json.loads(verdict_json)
    scored = [e for e in v.get("evidence", []) if e.get("score") is not None]
    if scored:
        return max(scored, key=lambda e: e["score"])["explanation"]
    return v.get("summary", "")


def _summary(verdict_json: str | None) -> str:
    import json

    return json.loads(verdict_json).get("summary", "") if verdict_json else ""


@router.get("")
async def queue(request: Request, session: Reviewer, show: str = "open"):
    caller, sid = session
    q = select(scans).where(scans.c.route.in_(("review", "quarantine"))).order_by(scans.c.seq.desc()).limit(500)
    if show == "open":
        q = q.where(scans.c.review_state.in_(OPEN_STATES))

    def run():
        with request.app.state.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]
    rows = await asyncio.to_thread(run)
    trs = []
    for r in rows:
        thumb = (f'<img class="thumb" alt="" src="/review/scans/{r["id"]}/thumb">' if r["thumb"] else "")
        trs.append(
            f'<tr class="item" data-id="{r["id"]}"><td>{thumb}</td>'
            f'<td><a href="/review/scans/{r["id"]}">{escape(r["filename"] or r["id"])}</a></td>'
            f'<td class="route-{r["route"]}">{r["route"]}</td><td>{percent(r["probability"])}</td>'
            f'<td>{escape(top_cue(r["verdict_json"], r["reason"]))}</td><td>{_age(r["created_at"])}</td>'
            f'<td>{escape(r["review_state"] or "")}</td></tr>')
    other = ("all", "Show decided items too") if show == "open" else ("open", "Show open items only")
    body = (f'<h1>Review queue</h1><p>{len(rows)} item(s). <a href="/review?show={other[0]}">{other[1]}</a></p>'
            '<table id="queue"><tr><th></th><th>File</th><th>Route</th><th>P(manipulated)</th><th>Top cue</th>'
            '<th>Age</th><th>State</th></tr>' + "".join(trs) + "</table>")
    return _page("Review queue", body, caller, _csrf(request, sid))


def _audit_row(h: dict, link: bool = False) -> str:
    """One decision as a table row; `link`: with a column that opens its scan (the whole log's page)."""
    scan = f'<td><a href="/review/scans/{h["scan_id"]}">{h["scan_id"][:8]}</a></td>' if link else ""
    return (f'<tr class="audit"><td>{iso(h["at"])}</td><td>{escape(h["actor"])}</td>{scan}<td>{h["action"]}</td>'
            f'<td>{escape(h["previous_state"] or "")} → {escape(h["new_state"] or "")}</td>'
            f'<td>{escape(h["comment"] or "")}</td></tr>')


@router.get("/scans/{scan_id}")
async def detail(request: Request, scan_id: str, session: Reviewer):
    caller, sid = session
    row = await asyncio.to_thread(load_scan, request.app.state.engine, scan_id)
    if row is None:
        raise HTTPException(404, "no such scan")
    history = await asyncio.to_thread(audit_rows, request.app.state.engine, scan_id)
    token = _csrf(request, sid)
    facts = "".join(f"<tr><th>{k}</th><td>{escape(str(v))}</td></tr>" for k, v in (
        ("File", row["filename"]), ("Status", row["status"]), ("Route", row["route"]),
        ("P(manipulated)", percent(row["probability"])), ("Label", row["label"]),
        ("Summary", _summary(row["verdict_json"])), ("Top cue", top_cue(row["verdict_json"], row["reason"])),
        ("Review state", row["review_state"] or "not in review"), ("Submitted", iso(row["created_at"])),
        ("SHA-256", row["sha256"]), ("Reason", row["reason"] or "")))
    hist = "".join(_audit_row(h) for h in history)
    hist = hist or '<tr><td class="muted">No decisions yet.</td></tr>'
    buttons = "".join(f'<button type="submit" name="decision" value="{d}" id="decide-{d}">{label}</button>'
                      for d, label in (("confirmed_fake", "Confirmed fake"), ("false_alarm", "False alarm"),
                                       ("escalate", "Escalate")))
    form = (f'<form method="post" action="/review/scans/{row["id"]}/decision" class="card">'
            f'<input type="hidden" name="csrf" value="{token}"><label>Comment<br>'
            f'<textarea name="comment" id="comment" maxlength="4000"></textarea></label><p>{buttons}</p></form>')
    report = (f'<iframe title="report" sandbox src="/review/scans/{row["id"]}/report"></iframe>'
              if row["report"] else "<p>No report (not scanned).</p>")
    body = (f'<h1>{escape(row["filename"] or row["id"])}</h1><div class="card"><table>{facts}</table></div>'
            f'{form}<div class="card"><h2>Decisions</h2><table id="history">{hist}</table></div>{report}')
    return _page(row["filename"] or row["id"], body, caller, token)


@router.post("/scans/{scan_id}/decision")
async def decide(request: Request, scan_id: str, session: Reviewer):
    caller, sid = session
    form = await request.form()
    if not csrf_ok(request.app.state.settings.secret("session"), sid, form.get("csrf")):
        raise HTTPException(403, "bad or missing CSRF token; reload the page and try again")
    decision = str(form.get("decision", ""))
    if decision not in DECISIONS:
        raise HTTPException(400, f"decision must be one of {', '.join(DECISIONS)}")
    comment = str(form.get("comment", ""))[:4000]
    new_state = DECISIONS[decision]
    engine = request.app.state.engine

    def apply() -> bool:
        row = load_scan(engine, scan_id)
        if row is None:
            raise HTTPException(404, "no such scan")
        if row["route"] not in ("review", "quarantine"):
            raise HTTPException(409, "this item is not in review")
        previous = row["review_state"]
        with engine.begin() as conn:
            # Conditional on the state we showed: two reviewers deciding at once cannot both win silently.
            cond = scans.c.review_state == previous if previous is not None else scans.c.review_state.is_(None)
            n = conn.execute(update(scans).where(scans.c.id == scan_id, cond)
                             .values(review_state=new_state)).rowcount
            if n != 1:
                return False
            conn.execute(insert(audit_log).values(at=time.time(), actor=caller.actor, scan_id=scan_id,
                                                  action=decision, previous_state=previous, new_state=new_state,
                                                  comment=comment))
        return True
    if not await asyncio.to_thread(apply):
        raise HTTPException(409, "someone decided on this item meanwhile; reload the page")
    return RedirectResponse(f"/review/scans/{scan_id}", status_code=303)


@router.get("/scans/{scan_id}/report", dependencies=[Depends(_reviewer)])
async def report(request: Request, scan_id: str):
    return await report_response(request, scan_id)


@router.get("/scans/{scan_id}/thumb", dependencies=[Depends(_reviewer)])
async def thumb(request: Request, scan_id: str):
    row = await asyncio.to_thread(load_scan, request.app.state.engine, scan_id)
    if row is None or not row["thumb"]:
        raise HTTPException(404, "no thumbnail")
    return FileResponse(request.app.state.settings.data_dir / "thumbs" / row["thumb"], media_type="image/jpeg")


@router.get("/audit")
async def audit(request: Request, session: Reviewer):
    caller, sid = session
    rows = await asyncio.to_thread(audit_rows, request.app.state.engine)
    trs = "".join(_audit_row(h, link=True) for h in reversed(rows))
    body = ('<h1>Audit log</h1><p>Export: <a href="/review/audit.csv">CSV</a> · '
            '<a href="/review/audit.jsonl">JSON Lines</a></p><table id="audit"><tr><th>When</th><th>Who</th>'
            '<th>Scan</th><th>Decision</th><th>State</th><th>Comment</th></tr>' + trs + '</table>')
    return _page("Audit log", body, caller, _csrf(request, sid))


@router.get("/audit.{fmt}", dependencies=[Depends(_reviewer)])
async def audit_export(request: Request, fmt: str) -> Response:
    if fmt not in ("csv", "jsonl"):
        raise HTTPException(404, "export as audit.csv or audit.jsonl")
    return export_audit(await asyncio.to_thread(audit_rows, request.app.state.engine), fmt)
