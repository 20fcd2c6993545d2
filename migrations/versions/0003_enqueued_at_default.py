"""jobs.enqueued_at defaults to now(): a submit can COPY its rows straight into jobs

A submit stamped enqueued_at itself (INSERT ... SELECT ..., now() from a COPY-filled temporary table). With
the default, a chunk whose custom_ids are all new is COPYed into jobs directly, and the temporary table is
kept for chunks that hold a resubmitted custom_id (ON CONFLICT DO NOTHING).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("jobs", "enqueued_at", server_default=sa.text("now()"))


def downgrade() -> None:
    op.alter_column("jobs", "enqueued_at", server_default=None)
