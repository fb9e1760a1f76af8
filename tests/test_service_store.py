"""The job table on both stores, without a server: atomic claims under contention, results stored only by the
current claim, re-queueing, Idempotency-Key uniqueness, and the database refusing edits to the audit log.
PostgreSQL: a fresh database on 127.0.0.1:5432, skipped with a reason only when none is reachable."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import DBAPIError

from deepscreen.service import jobs
from deepscreen.service.store import audit_log, make_engine, migrate, scans
from service_server import pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path / 'store.db'}", None
    else:
        made = pg_database()
        if made is None:
            pytest.skip("no PostgreSQL server reachable on 127.0.0.1:5432 (set DEEPSCREEN_TEST_PG to another)")
        url, drop = made
    eng = make_engine(url)
    migrate(eng)
    yield eng
    eng.dispose()
    if drop:
        drop()


def _queue(engine, n: int) -> list[str]:
    return [jobs.new_scan(engine, sha256=f"{i:064x}", size=1, kind="image", filename=f"{i}.jpg",
                          submitted_by="k", callback_url=None)[0] for i in range(n)]


def test_each_job_is_claimed_once_under_contention(engine):
    ids = _queue(engine, 40)
    claimed: list[tuple[int, str]] = []
    lock = threading.Lock()

    def worker(number: int):
        while (job := jobs.claim(engine, "server", number)) is not None:
            with lock:
                claimed.append((number, job["id"]))
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i for _, i in claimed) == sorted(ids), "every job claimed exactly once"
    with engine.connect() as conn:
        assert conn.execute(select(scans.c.status).distinct()).scalars().all() == ["running"]


def test_only_the_current_claim_stores_a_result(engine):
    (scan_id,) = _queue(engine, 1)
    first = jobs.claim(engine, "old-server", 0)
    assert jobs.requeue(engine, scans.c.claimed_server == "old-server", max_attempts=3) == 1
    second = jobs.claim(engine, "new-server", 0)
    assert second["id"] == scan_id and second["attempts"] == 2
    assert not jobs.finish(engine, scan_id, first["claim"], status="done", route="pass")  # the dead claim
    assert jobs.finish(engine, scan_id, second["claim"], status="done", route="review")
    assert not jobs.finish(engine, scan_id, second["claim"], status="done", route="pass")  # never twice
    with engine.connect() as conn:
        assert conn.execute(select(scans.c.route, scans.c.claim).where(scans.c.id == scan_id)).one() == \
            ("review", None)


def test_a_file_that_keeps_killing_workers_is_rejected(engine):
    (scan_id,) = _queue(engine, 1)
    for _ in range(3):
        assert jobs.claim(engine, "s", 0)["id"] == scan_id
        jobs.requeue_worker(engine, "s", 0, max_attempts=3)  # the worker died with it
    with engine.connect() as conn:
        row = conn.execute(select(scans).where(scans.c.id == scan_id)).mappings().one()
    assert (row["status"], row["route"], row["attempts"]) == ("error", "reject", 3)
    assert "3 times" in row["reason"] and jobs.claim(engine, "s", 0) is None


def test_recover_requeues_jobs_of_gone_servers_only(engine):
    a, b, c = _queue(engine, 3)
    jobs.register_server(engine, "dead-here", "host1", 1)
    jobs.register_server(engine, "alive-there", "host2", 2)
    jobs.register_server(engine, "me", "host1", 3)
    for server in ("dead-here", "alive-there", "me"):
        jobs.claim(engine, server, 0)
    assert jobs.recover(engine, "me", "host1", lease_s=30, max_attempts=3) == 1  # an earlier start on my host
    with engine.begin() as conn:  # host2 falls silent
        conn.execute(update(jobs.servers).where(jobs.servers.c.id == "alive-there")
                     .values(heartbeat_at=time.time() - 60))
    assert jobs.recover(engine, "me", "host1", lease_s=30, max_attempts=3) == 1
    with engine.connect() as conn:
        status = dict(conn.execute(select(scans.c.id, scans.c.status)).all())
    assert status == {a: "queued", b: "queued", c: "running"}


def test_idempotency_key_is_unique_per_api_key(engine):
    kw = dict(sha256="a" * 64, size=1, kind="image", filename="x.jpg", callback_url=None)
    first = jobs.new_scan(engine, submitted_by="k1", idempotency_key="same", **kw)
    assert jobs.new_scan(engine, submitted_by="k1", idempotency_key="same", **kw) == first
    assert jobs.new_scan(engine, submitted_by="k2", idempotency_key="same", **kw)[0] != first[0]
    with engine.connect() as conn:
        assert conn.execute(select(scans.c.id)).all().__len__() == 2


def test_audit_log_refuses_update_and_delete(engine):
    with engine.begin() as conn:
        conn.execute(insert(audit_log).values(at=time.time(), actor="a", scan_id="s", action="escalate"))
    for sql in ("UPDATE audit_log SET comment = 'edited'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text(sql))
    with engine.connect() as conn:
        assert conn.execute(select(audit_log.c.comment)).all() == [(None,)]


def test_a_clean_shutdown_does_not_count_as_an_attempt(engine):
    (scan_id,) = _queue(engine, 1)
    for _ in range(5):  # stopped mid-scan five times by clean restarts: never given up
        assert jobs.claim(engine, "s", 0)["id"] == scan_id
        assert jobs.requeue(engine, scans.c.claimed_server == "s", max_attempts=3, refund=True) == 1
    with engine.connect() as conn:
        assert conn.execute(select(scans.c.status, scans.c.attempts)).one() == ("queued", 0)
