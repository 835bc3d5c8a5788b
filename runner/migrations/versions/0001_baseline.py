"""The schema as it was before migrations: created where missing, so a database made by an
earlier version (no `alembic_version` yet, perhaps without the agent/model/context columns)
keeps its data and joins the history here.

Revision ID: 0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# 64-bit on PostgreSQL; SQLite's integers are 64-bit already and its row ids must be INTEGER.
BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Columns added after the first release, before migrations existed.
ADDED_COLUMNS: dict[str, sa.Column[Any]] = {
    "agent": sa.Column("agent", sa.Text),
    "model": sa.Column("model", sa.Text),
    "context": sa.Column("context", sa.Text),
    "best_of": sa.Column("best_of", sa.Integer, nullable=False, server_default="1"),
}


def tables() -> list[tuple[str, list[Any], dict[str, Any]]]:
    """Each table's columns and constraints, as the earlier versions created them."""
    return [
        ("deliveries", [
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("event", sa.Text, nullable=False),
            sa.Column("received_at", sa.Float, nullable=False),
        ], {}),
        ("tasks", [
            sa.Column("id", BIG, primary_key=True, autoincrement=True),
            sa.Column("repo", sa.Text, nullable=False),
            sa.Column("installation_id", BIG, nullable=False),
            sa.Column("number", BIG, nullable=False),
            sa.Column("is_pull_request", sa.Integer, nullable=False),
            sa.Column("title", sa.Text, nullable=False),
            sa.Column("clone_url", sa.Text, nullable=False),
            sa.Column("default_branch", sa.Text, nullable=False),
            sa.Column("comment_id", BIG),
            sa.Column("comment_kind", sa.Text, nullable=False),
            sa.Column("requester", sa.Text, nullable=False),
            sa.Column("kind", sa.Text, nullable=False),
            sa.Column("request", sa.Text, nullable=False),
            sa.Column("head_ref", sa.Text),
            sa.Column("head_sha", sa.Text),
            sa.Column("thread_body", sa.Text, nullable=False, server_default=""),
            sa.Column("delivery_id", sa.Text, nullable=False),
            sa.Column("state", sa.Text, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
            sa.Column("agent", sa.Text),
            sa.Column("model", sa.Text),
            sa.Column("context", sa.Text),
            sa.Column("best_of", sa.Integer, nullable=False, server_default="1"),
        ], {"sqlite_autoincrement": True}),
        ("installations", [
            sa.Column("id", BIG, primary_key=True, autoincrement=False),
            sa.Column("account", sa.Text, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        ], {}),
        ("installation_repos", [
            sa.Column("installation_id", BIG, primary_key=True, autoincrement=False),
            sa.Column("repo", sa.Text, primary_key=True),
        ], {}),
        ("phases", [
            sa.Column("task_id", BIG, primary_key=True, autoincrement=False),
            sa.Column("name", sa.Text, primary_key=True),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("seconds", sa.Float),
            sa.Column("note", sa.Text, nullable=False, server_default=""),
            sa.Column("updated_at", sa.Float, nullable=False),
        ], {}),
        ("agent_usage", [
            sa.Column("task_id", BIG, primary_key=True, autoincrement=False),
            sa.Column("usage", sa.Text, nullable=False),
        ], {}),
        ("task_branches", [
            sa.Column("task_id", BIG, primary_key=True, autoincrement=False),
            sa.Column("branch", sa.Text, nullable=False),
            sa.Column("pull_url", sa.Text),
        ], {}),
        ("inbox", [
            sa.Column("delivery_id", sa.Text, primary_key=True),
            sa.Column("event", sa.Text, nullable=False),
            sa.Column("payload", sa.Text, nullable=False),
            sa.Column("state", sa.Text, nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
            sa.Column("outcome", sa.Text),
            sa.Column("reason", sa.Text, nullable=False, server_default=""),
            sa.Column("updated_at", sa.Float, nullable=False),
        ], {}),
        ("refusals", [
            sa.Column("repo", sa.Text, primary_key=True),
            sa.Column("number", BIG, primary_key=True, autoincrement=False),
        ], {}),
    ]  # fmt: skip


INDEXES = [
    ("tasks_thread", "tasks", ["repo", "number", "id"]),
    ("tasks_state", "tasks", ["state"]),
    ("tasks_delivery", "tasks", ["delivery_id"]),
    ("inbox_state", "inbox", ["state"]),
]


def indexes(inspector: sa.Inspector, table: str) -> set[str]:
    return {str(index["name"]) for index in inspector.get_indexes(table)}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, items, options in tables():
        if name not in existing:
            op.create_table(name, *items, **options)
    if "tasks" in existing:
        have = {column["name"] for column in inspector.get_columns("tasks")}
        for name, column in ADDED_COLUMNS.items():
            if name not in have:
                op.add_column("tasks", column)
    for index, table, columns in INDEXES:
        if table not in existing or index not in indexes(inspector, table):
            op.create_index(index, table, columns)


def downgrade() -> None:
    for name, _, _ in reversed(tables()):
        op.drop_table(name)
