"""What a delivery did on GitHub, kept so that the inbox's retries never do it twice: the
reply it posts (its text, then the comment's id), and which delivery holds a thread's
refusal.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_effects",
        sa.Column("delivery_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", sa.Float, nullable=False),
    )
    op.create_index("delivery_effects_result", "delivery_effects", ["kind", "result"])
    op.add_column("refusals", sa.Column("delivery_id", sa.Text))


def downgrade() -> None:
    op.drop_column("refusals", "delivery_id")
    op.drop_index("delivery_effects_result", "delivery_effects")
    op.drop_table("delivery_effects")
