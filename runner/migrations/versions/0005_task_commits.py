"""A task's commit, kept before it is pushed, and the head the task started from: a retry
after a crash between the push and its record finds its commit on the branch instead of
pushing a second one, and works from where the first try did.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("task_branches", sa.Column("start_sha", sa.Text))
    op.add_column("task_branches", sa.Column("commit_sha", sa.Text))


def downgrade() -> None:
    op.drop_column("task_branches", "commit_sha")
    op.drop_column("task_branches", "start_sha")
