"""Scale-out: a task's lease (which worker runs it, until when), its log and patch kept in the
database so that any server shows them, and the inbox's arrival order on PostgreSQL (SQLite
keeps it in the row id).

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("tasks", sa.Column("lease_owner", sa.Text))
    op.add_column("tasks", sa.Column("lease_until", sa.Float))
    op.create_table(
        "task_logs",
        sa.Column("task_id", BIG, primary_key=True, autoincrement=False),
        sa.Column("start", BIG, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "task_patches",
        sa.Column("task_id", BIG, primary_key=True, autoincrement=False),
        sa.Column("patch", sa.LargeBinary, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.add_column("inbox", sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False))
        op.create_index("inbox_seq", "inbox", ["seq"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_column("inbox", "seq")
    op.drop_table("task_patches")
    op.drop_table("task_logs")
    op.drop_column("tasks", "lease_until")
    op.drop_column("tasks", "lease_owner")
