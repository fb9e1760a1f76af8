"""The tables, the engine, and schema migrations (Alembic, applied at start).

SQLAlchemy Core rather than the ORM: the job table is driven by conditional UPDATEs whose row counts say who won
a race, which Core expresses directly. Times are Unix seconds (float) so SQLite and PostgreSQL compare them alike.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (Column, Float, Index, Integer, MetaData, String, Table, Text, create_engine, event)
from sqlalchemy.engine import Engine

metadata = MetaData()

api_keys = Table(
    "api_keys", metadata,
    Column("id", String(16), primary_key=True),  # public: shown by `keys list`, written in the audit log
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

scans = Table(
    "scans", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # order of arrival: queue order and cursors
    Column("id", String(32), nullable=False, unique=True),  # public, unguessable
    Column("status", String(16), nullable=False),  # queued | running | done | error
    Column("route", String(16)),
    Column("label", String(16)),
    Column("probability", Float),
    Column("kind", String(16)),
    Column("filename", String(255)),  # the client's name, for display only; never a path
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("models_key", String(64)),  # digest of the model versions that scanned it
    Column("verdict_json", Text),
    Column("reason", Text),  # why it was rejected or failed, one line
    Column("thumb", String(80)),  # file name under <data_dir>/thumbs
    Column("report", String(80)),  # file name under <data_dir>/reports
    Column("cached_from", String(32)),  # id of the scan whose result was reused (same bytes, same models)
    Column("submitted_by", String(16)),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("scan_seconds", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claim", String(32)),  # token of the current claim: only its holder may store the result
    Column("claimed_server", String(32)),
    Column("claimed_worker", Integer),
    Column("callback_url", Text),
    Column("callback_state", String(16)),  # pending | delivered | failed
    Column("callback_attempts", Integer, nullable=False, default=0),
    Column("callback_next_at", Float),
    Column("callback_error", Text),
    Column("review_state", String(16)),  # pending | confirmed_fake | released | escalated
    Column("idempotency_key", String(200)),  # the client's Idempotency-Key header, unique per API key
)
Index("ix_scans_status_seq", scans.c.status, scans.c.seq)
Index("ix_scans_sha_models", scans.c.sha256, scans.c.models_key)
Index("ix_scans_route", scans.c.route)
Index("ix_scans_created", scans.c.created_at)
Index("ix_scans_callback", scans.c.callback_state, scans.c.callback_next_at)
Index("ux_scans_idempotency", scans.c.submitted_by, scans.c.idempotency_key, unique=True)

audit_log = Table(
    "audit_log", metadata,  # append-only: the code never updates or deletes, and triggers refuse it
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(220), nullable=False),  # key id and name
    Column("scan_id", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("previous_state", String(16)),
    Column("new_state", String(16)),
    Column("comment", Text),
)

servers = Table(
    "servers", metadata,  # one row per server start; heartbeats let others re-queue a dead server's jobs
    Column("id", String(32), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)


def make_engine(url: str) -> Engine:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, not the psycopg2 default
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            # WAL: readers never block the writer; NORMAL sync is durable across a process crash (kill -9),
            # which is what the job table must survive; a power cut may lose the last commits.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (Alembic); safe to run at every start."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
