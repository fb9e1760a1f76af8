"""Result callbacks: when a scan with a callback_url finishes, POST its result there, signed, retried with
back-off, and only to hosts on the allow-list (the server must not become a way to reach internal hosts).

Delivery state lives in the scans table, so a restart resumes pending deliveries. A receiver checks
X-Deepscreen-Signature = "sha256=" + hex(HMAC-SHA256(callback secret, raw body)).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from .store import scans

log = logging.getLogger("deepscreen.service.callbacks")
LEASE_S = 60.0  # a delivery in progress is not picked again for this long (another server, or a crash)


def check_url(url: str, allowed_hosts: list[str]) -> str | None:
    """None if the URL may be called, else why not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "callback_url is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "callback_url must be an http or https URL"
    if parts.username or parts.password:
        return "callback_url must not carry credentials"
    host = parts.hostname.lower()
    port = port or (443 if parts.scheme == "https" else 80)
    allowed = {h.lower() for h in allowed_hosts}
    if host not in allowed and f"{host}:{port}" not in allowed:
        return f"callback host {host}:{port} is not on the allow-list (setting callback_hosts)"
    return None


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_s(attempt: int) -> float:
    return min(300.0, 2.0 ** attempt)  # 2, 4, 8 ... seconds, at most five minutes


def _due(engine: Engine, limit: int = 20) -> list[dict]:
    now = time.time()
    with engine.connect() as conn:
        rows = conn.execute(select(scans.c.seq, scans.c.id, scans.c.callback_url, scans.c.callback_attempts,
                                   scans.c.callback_next_at)
                            .where(scans.c.callback_state == "pending", scans.c.status.in_(("done", "error")),
                                   scans.c.callback_next_at <= now).order_by(scans.c.seq).limit(limit)).mappings()
        return [dict(r) for r in rows]


def _take(engine: Engine, row: dict) -> bool:
    """Lease one delivery (conditional on nobody else having leased it)."""
    with engine.begin() as conn:
        return conn.execute(update(scans).where(scans.c.seq == row["seq"], scans.c.callback_state == "pending",
                                                scans.c.callback_next_at == row["callback_next_at"])
                            .values(callback_next_at=time.time() + LEASE_S)).rowcount == 1


async def deliver_due(engine: Engine, client, secret: str, allowed_hosts: list[str], max_attempts: int,
                      payload_of) -> int:
    """One pass over due deliveries; returns how many were attempted."""
    rows = await asyncio.to_thread(_due, engine)
    for row in rows:
        if not await asyncio.to_thread(_take, engine, row):
            continue
        attempt = row["callback_attempts"] + 1
        error = check_url(row["callback_url"], allowed_hosts)  # the allow-list may have shrunk since submission
        if error is None:
            body = json.dumps(await asyncio.to_thread(payload_of, row["id"]), separators=(",", ":")).encode()
            try:
                resp = await client.post(row["callback_url"], content=body, headers={
                    "Content-Type": "application/json", "X-Deepscreen-Signature": sign(secret, body),
                    "X-Deepscreen-Scan": row["id"]})
                error = None if 200 <= resp.status_code < 300 else f"receiver answered {resp.status_code}"
            except Exception as err:  # connection refused, timeout, TLS: all retried
                error = f"{type(err).__name__}: {err}"[:500]
        if error is None:
            values = dict(callback_state="delivered", callback_attempts=attempt, callback_error=None)
        elif attempt >= max_attempts:
            values = dict(callback_state="failed", callback_attempts=attempt, callback_error=error)
        else:
            values = dict(callback_attempts=attempt, callback_error=error,
                          callback_next_at=time.time() + backoff_s(attempt))
        await asyncio.to_thread(_store, engine, row["seq"], values)
    return len(rows)


def _store(engine: Engine, seq: int, values: dict) -> None:
    with engine.begin() as conn:
        conn.execute(update(scans).where(scans.c.seq == seq).values(**values))


async def run_dispatcher(engine: Engine, settings, payload_of, stop: asyncio.Event) -> None:
    import httpx

    secret = settings.secret("callback")
    # No redirects: a redirect could lead the request to a host that is not on the allow-list.
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False, trust_env=False) as client:
        while not stop.is_set():
            try:
                n = await deliver_due(engine, client, secret, settings.callback_hosts,
                                      settings.callback_max_attempts, payload_of)
            except Exception:
                log.exception("callback pass failed")
                n = 0
            if n == 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=0.25)
                except asyncio.TimeoutError:
                    pass
