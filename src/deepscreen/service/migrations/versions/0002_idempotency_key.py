"""Idempotency-Key on submissions: a client that re-sends after a lost answer gets the same scan, not a second.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("scans") as batch:  # batch: SQLite cannot ALTER most things in place
        batch.add_column(sa.Column("idempotency_key", sa.String(200)))
    # Unique per API key: two clients may pick the same key without colliding.
    op.create_index("ux_scans_idempotency", "scans", ["submitted_by", "idempotency_key"], unique=True)


def downgrade():
    op.drop_index("ux_scans_idempotency", "scans")
    with op.batch_alter_table("scans") as batch:
        batch.drop_column("idempotency_key")
