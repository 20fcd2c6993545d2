"""batches.unpublished: the jobs a submit recorded but has not yet handed to the broker

Replaces a per-job UPDATE of jobs.enqueued_at after each published chunk (a second write of every job row)
with one array update per chunk. jobs.enqueued_at is now set when the job is recorded.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "batches",
        sa.Column(
            "unpublished",
            postgresql.ARRAY(sa.Uuid()),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("batches", "unpublished")
