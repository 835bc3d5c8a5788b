"""A burst of mentions costs one config and one permission lookup per repository."""

from __future__ import annotations

import asyncio
from collections import Counter

from forge.sender import Delivery
from tests.bot.conftest import OWNER, WRITER, Gantry

REPOS, MENTIONS_PER_REPO = 20, 10
CONFIG_ROUTE = "/repos/{owner}/{repo}/contents/*"
PERMISSION_ROUTE = "/repos/{owner}/{repo}/collaborators/{user}/permission"
LATENCY_S = 0.05  # GitHub answers in tens of milliseconds; the burst arrives within that


async def burst_of_mentions(gantry: Gantry) -> list[Delivery]:
    """Ten signed mentions on an issue in each of twenty repositories of one installation."""
    names = [f"burst-{n}" for n in range(REPOS)]
    for name in names:
        await gantry.forge.create_repo(OWNER, name)
        gantry.forge.set_permission(OWNER, name, WRITER, "write")
    installation_id = gantry.forge.install(gantry.creds.app_id, OWNER, names)
    deliveries = []
    for name in names:
        issue = gantry.forge.create_issue(OWNER, name, "Flaky date test")
        for n in range(MENTIONS_PER_REPO):
            body = f"@gantry fix it, take {n}"
            payload = gantry.examples("issue_comment")[0]
            payload["issue"].pop("pull_request", None)
            payload["comment"]["id"] = gantry.forge.add_comment(
                OWNER, name, issue.number, body, WRITER
            )
            delivery = gantry.delivery(
                "issue_comment",
                payload,
                body=body,
                number=issue.number,
                repo=name,
                installation_id=installation_id,
            )
            deliveries.append(delivery)
    return deliveries


def lookups(gantry: Gantry) -> Counter[str]:
    """How many config and permission requests each burst repository cost."""
    counted: Counter[str] = Counter()
    for record in gantry.forge.requests:
        if "/burst-" not in record.path or record.method != "GET":
            continue
        if "/contents/" in record.path:
            counted["config"] += 1
        elif record.path.endswith("/permission"):
            counted["permission"] += 1
    return counted


async def test_200_mentions_over_20_repositories_cost_20_lookups_of_each(gantry: Gantry) -> None:
    deliveries = await burst_of_mentions(gantry)
    for route in (CONFIG_ROUTE, PERMISSION_ROUTE):
        gantry.forge.inject_fault("GET", route, "latency", count=None, delay=LATENCY_S)
    answers = await asyncio.gather(*(gantry.post(d) for d in deliveries))
    assert [answer for _, answer in answers] == [{"outcome": "queued"}] * len(deliveries)
    assert lookups(gantry) == {"config": REPOS, "permission": REPOS}
    assert len(await gantry.tasks()) == len(deliveries)
    await gantry.settle()
