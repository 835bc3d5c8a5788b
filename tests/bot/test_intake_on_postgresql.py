"""`gantry serve` on PostgreSQL: the intake's scenarios, run again with the store there."""

from __future__ import annotations

import pytest

from tests.bot.test_intake import (
    test_a_cancel_after_the_task_ended_keeps_its_end_and_says_so,
    test_a_delivery_still_failing_after_its_retries_is_kept_with_its_reason,
    test_a_failed_delivery_redelivered_once_github_is_back_becomes_one_task,
    test_a_redelivery_after_a_restart_is_still_a_duplicate,
    test_a_restart_keeps_queued_tasks,
    test_installations_are_remembered_and_forgotten,
    test_status_cancel_and_retry_act_on_the_store,
)

__all__ = [
    "test_a_cancel_after_the_task_ended_keeps_its_end_and_says_so",
    "test_a_delivery_still_failing_after_its_retries_is_kept_with_its_reason",
    "test_a_failed_delivery_redelivered_once_github_is_back_becomes_one_task",
    "test_a_redelivery_after_a_restart_is_still_a_duplicate",
    "test_a_restart_keeps_queued_tasks",
    "test_installations_are_remembered_and_forgotten",
    "test_status_cancel_and_retry_act_on_the_store",
]


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """The `gantry` fixture's store is a fresh PostgreSQL database."""
    return postgres_url
