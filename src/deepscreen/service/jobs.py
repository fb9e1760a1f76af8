"""The durable job table: claim, finish, re-queue. Every change of state is one conditional UPDATE whose row count
says whether this caller won, so two workers (or a worker and a restarted server) can never both own a job, and
a result is stored only by the claim that is still current: no job ever gets two results.
"""

from __future__ import annotations

import secrets
import time
import uuid

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .store import is_postgres, scans, servers


def new_scan(engine: Engine, *, sha256: str, size: int, kind: str | None, filename: str, submitted_by: str,
             callback_url: str | None, status: str = "queued", route: str | None = None, label: str | None = None,
             reason: str | None = None, idempotency_key: str | None = None) -> tuple[str, str, str]:
    """Insert a job; returns (id, status, sha256). With an idempotency key already used by this API key, nothing
    is inserted and the earlier scan's come back."""
    scan_id = uuid.uuid4().hex
    now = time.time()
    done = status in ("done", "error")
    try:
        with engine.begin() as conn:
            conn.execute(insert(scans).values(
                id=scan_id, status=status, sha256=sha256, size=size, kind=kind, filename=filename,
                submitted_by=submitted_by, created_at=now, attempts=0, callback_attempts=0, route=route, label=label,
                reason=reason, finished_at=now if done else None, callback_url=callback_url,
                callback_state="pending" if callback_url else None, callback_next_at=now if callback_url else None,
                idempotency_key=idempotency_key))
    except IntegrityError:
        earlier = by_idempotency_key(engine, submitted_by, idempotency_key) if idempotency_key else None
        if earlier is None:
            raise
        return earlier
    return scan_id, status, sha256


def by_idempotency_key(engine: Engine, submitted_by: str, key: str) -> tuple[str, str, str] | None:
    with engine.connect() as conn:
        row = conn.execute(select(scans.c.id, scans.c.status, scans.c.sha256).where(
            scans.c.submitted_by == submitted_by, scans.c.idempotency_key == key)).first()
    return (row.id, row.status, row.sha256) if row else None


def claim(engine: Engine, server_id: str, worker: int) -> dict | None:
    """Take the oldest queued job, atomically; None when the queue is empty."""
    token = secrets.token_hex(8)
    now = time.time()
    values = dict(status="running", claim=token, claimed_server=server_id, claimed_worker=worker, started_at=now,
                  attempts=scans.c.attempts + 1)
    with engine.begin() as conn:
        if is_postgres(engine):
            # Row locks let many workers pull from the queue at once without waiting on each other.
            seq = conn.execute(select(scans.c.seq).where(scans.c.status == "queued").order_by(scans.c.seq)
                               .limit(1).with_for_update(skip_locked=True)).scalar()
            if seq is None:
                return None
            conn.execute(update(scans).where(scans.c.seq == seq).values(**values))
        else:
            # SQLite has one writer at a time: a single UPDATE that re-checks `queued` is atomic by itself.
            oldest = select(scans.c.seq).where(scans.c.status == "queued").order_by(scans.c.seq).limit(1)
            n = conn.execute(update(scans).where(scans.c.seq == oldest.scalar_subquery(),
                                                 scans.c.status == "queued").values(**values)).rowcount
            if n != 1:
                return None
        row = conn.execute(select(scans).where(scans.c.claim == token)).mappings().first()
    return dict(row) if row else None


def finish(engine: Engine, scan_id: str, token: str, **values) -> bool:
    """Store a result if `token` still holds the job. False: the claim was lost (job re-queued meanwhile)."""
    values.setdefault("finished_at", time.time())
    with engine.begin() as conn:
        n = conn.execute(update(scans).where(scans.c.id == scan_id, scans.c.claim == token,
                                             scans.c.status == "running").values(claim=None, **values)).rowcount
    return n == 1


def cached_result(engine: Engine, sha256: str, models_key: str) -> dict | None:
    """A finished scan of the same bytes by the same model versions, if any: its result is reused."""
    with engine.connect() as conn:
        row = conn.execute(select(scans).where(
            scans.c.sha256 == sha256, scans.c.models_key == models_key, scans.c.status.in_(("done", "error")),
            scans.c.verdict_json.is_not(None), scans.c.cached_from.is_(None)).order_by(scans.c.seq).limit(1)
        ).mappings().first()
    return dict(row) if row else None


def requeue(engine: Engine, where, max_attempts: int, refund: bool = False) -> int:
    """Put matching running jobs back in the queue, or give them up as `error` when they have crashed the
    scanner max_attempts times (a file that kills the decoder must not kill every worker forever).
    refund: the scan was stopped on purpose (a clean shutdown), so it does not count as an attempt."""
    now = time.time()
    values = dict(status="queued", claim=None, claimed_server=None, claimed_worker=None)
    if refund:
        values["attempts"] = scans.c.attempts - 1
    with engine.begin() as conn:
        n = conn.execute(update(scans).where(scans.c.status == "running", where,
                                             scans.c.attempts < max_attempts + refund)
                         .values(**values)).rowcount
        conn.execute(update(scans).where(scans.c.status == "running", where, scans.c.attempts >= max_attempts)
                     .values(status="error", route="reject", label="error", claim=None, finished_at=now,
                             reason=f"the scanner stopped while reading this file {max_attempts} times"))
    return n


def register_server(engine: Engine, server_id: str, host: str, pid: int) -> None:
    now = time.time()
    with engine.begin() as conn:
        conn.execute(insert(servers).values(id=server_id, host=host, pid=pid, started_at=now, heartbeat_at=now))


def heartbeat(engine: Engine, server_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(servers).where(servers.c.id == server_id).values(heartbeat_at=time.time()))


def recover(engine: Engine, server_id: str, host: str, lease_s: float, max_attempts: int) -> int:
    """Re-queue jobs left running by servers that are gone: an earlier run on this host (we were restarted, e.g.
    after kill -9) or any server silent for longer than the lease."""
    stale = time.time() - lease_s
    dead = select(servers.c.id).where(servers.c.id != server_id,
                                      or_(servers.c.host == host, servers.c.heartbeat_at < stale))
    return requeue(engine, or_(scans.c.claimed_server.in_(dead), scans.c.claimed_server.is_(None)), max_attempts)


def queue_depth(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(scans.c.status, func.count()).where(scans.c.status.in_(("queued", "running")))
                            .group_by(scans.c.status)).all()
    return {status: n for status, n in rows}


def requeue_worker(engine: Engine, server_id: str, worker: int, max_attempts: int) -> int:
    return requeue(engine, and_(scans.c.claimed_server == server_id, scans.c.claimed_worker == worker),
                   max_attempts)
