"""`@gantry reset-cache` across hosts: the server records a reset, every worker drops that
repository's cached environments on its own engine.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cache_resets",
        sa.Column("id", BIG, primary_key=True, autoincrement=True),
        sa.Column("repo", sa.Text, nullable=False),
        sa.Column("requested_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("cache_resets")
