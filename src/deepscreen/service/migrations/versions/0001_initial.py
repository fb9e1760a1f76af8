"""Initial schema: API keys, the scan/job table, the append-only audit log, server heartbeats.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_table(
        "scans",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("route", sa.String(16)),
        sa.Column("label", sa.String(16)),
        sa.Column("probability", sa.Float),
        sa.Column("kind", sa.String(16)),
        sa.Column("filename", sa.String(255)),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("models_key", sa.String(64)),
        sa.Column("verdict_json", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("thumb", sa.String(80)),
        sa.Column("report", sa.String(80)),
        sa.Column("cached_from", sa.String(32)),
        sa.Column("submitted_by", sa.String(16)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("scan_seconds", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claim", sa.String(32)),
        sa.Column("claimed_server", sa.String(32)),
        sa.Column("claimed_worker", sa.Integer),
        sa.Column("callback_url", sa.Text),
        sa.Column("callback_state", sa.String(16)),
        sa.Column("callback_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("callback_next_at", sa.Float),
        sa.Column("callback_error", sa.Text),
        sa.Column("review_state", sa.String(16)),
    )
    op.create_index("ix_scans_status_seq", "scans", ["status", "seq"])
    op.create_index("ix_scans_sha_models", "scans", ["sha256", "models_key"])
    op.create_index("ix_scans_route", "scans", ["route"])
    op.create_index("ix_scans_created", "scans", ["created_at"])
    op.create_index("ix_scans_callback", "scans", ["callback_state", "callback_next_at"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(220), nullable=False),
        sa.Column("scan_id", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("previous_state", sa.String(16)),
        sa.Column("new_state", sa.String(16)),
        sa.Column("comment", sa.Text),
    )
    op.create_table(
        "servers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
    )
    # The audit log is evidence: refuse UPDATE and DELETE in the database itself, not only in the code.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$ BEGIN "
                   "RAISE EXCEPTION 'audit_log is append-only'; END $$ LANGUAGE plpgsql")
        op.execute("CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")
    else:
        for what in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{what.lower()} BEFORE {what} ON audit_log "
                       "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")


def downgrade():
    for name in ("servers", "audit_log", "scans", "api_keys"):
        op.drop_table(name)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
