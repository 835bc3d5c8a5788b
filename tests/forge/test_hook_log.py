"""The stand-in's delivery log: GitHub's item shape, newest first, paginated by cursor."""

from __future__ import annotations

from forge.data import ensure_github_data
from forge.hook_log import HookLog
from forge.openapi import load_spec
from forge.sender import build_delivery

ITEM = "#/components/schemas/hook-delivery-item"


def logged(count: int) -> HookLog:
    log = HookLog()
    for n in range(count):
        payload = {"action": "created", "installation": {"id": 7}, "repository": {"id": 9}}
        delivery = build_delivery("issue_comment", payload, "s")
        status = 200 if n % 2 else 0
        log.record("http://x/webhook", delivery, status, redelivery=False, when=1.7e9 + n)
    return log


def test_items_have_githubs_shape() -> None:
    validator = load_spec(ensure_github_data().openapi).validator(ITEM)
    for entry in logged(2).entries:
        errors = [e.message for e in validator.iter_errors(entry.render())]
        assert errors == [], errors
    ok, failed = logged(2).entries[1].render(), logged(1).entries[0].render()
    assert (ok["status"], ok["status_code"], ok["installation_id"]) == ("OK", 200, 7)
    assert (failed["status_code"], failed["delivered_at"]) == (0, "2023-11-14T22:13:20Z")


def test_pages_go_newest_first_and_end_without_a_cursor() -> None:
    log = logged(5)
    first, cursor = log.page(None, 2)
    second, cursor2 = log.page(cursor, 2)
    last, end = log.page(cursor2, 2)
    assert [e.id for e in first + second + last] == [5, 4, 3, 2, 1]
    assert end is None
