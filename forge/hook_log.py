"""The App's delivery log: every webhook the sender tried, its status, and redeliveries."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from forge.sender import Delivery, post_delivery

JSON = dict[str, Any]


@dataclass(frozen=True)
class HookDelivery:
    """One attempt to deliver a webhook, as `GET /app/hook/deliveries` lists it."""

    id: int
    url: str
    delivery: Delivery
    delivered_at: datetime.datetime
    redelivery: bool
    status_code: int
    installation_id: int | None
    repository_id: int | None

    def render(self) -> JSON:
        """The `hook-delivery-item` object of GitHub's REST API."""
        data = json.loads(self.delivery.body)
        ok = 200 <= self.status_code < 300
        return {
            "id": self.id,
            "guid": self.delivery.delivery_id,
            "delivered_at": self.delivered_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "redelivery": self.redelivery,
            "duration": 0.01,
            "status": "OK" if ok else ("failed to connect" if not self.status_code else "Invalid"),
            "status_code": self.status_code,
            "event": self.delivery.event,
            "action": data.get("action") if isinstance(data.get("action"), str) else None,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
            "throttled_at": None,
        }


@dataclass
class HookLog:
    """One App's deliveries, newest first when listed."""

    entries: list[HookDelivery] = field(default_factory=list)

    def record(
        self, url: str, delivery: Delivery, status_code: int, *, redelivery: bool, when: float
    ) -> HookDelivery:
        """Remember one attempt."""
        data = json.loads(delivery.body)
        installation = data.get("installation") or {}
        repository = data.get("repository") or {}
        entry = HookDelivery(
            id=len(self.entries) + 1,
            url=url,
            delivery=delivery,
            delivered_at=datetime.datetime.fromtimestamp(when, datetime.UTC),
            redelivery=redelivery,
            status_code=status_code,
            installation_id=installation.get("id"),
            repository_id=repository.get("id"),
        )
        self.entries.append(entry)
        return entry

    def page(self, cursor: str | None, per_page: int) -> tuple[list[HookDelivery], str | None]:
        """Newest first, from `cursor` (an id to start below); the next page's cursor."""
        newest = sorted(self.entries, key=lambda e: e.id, reverse=True)
        if cursor is not None:
            newest = [e for e in newest if e.id < int(cursor)]
        chunk = newest[:per_page]
        more = len(newest) > per_page
        return chunk, (str(chunk[-1].id) if more and chunk else None)

    async def send(
        self, url: str, delivery: Delivery, *, redelivery: bool, when: float
    ) -> HookDelivery:
        """POST a delivery and record the attempt (status 0: nothing answered)."""
        try:
            status = await post_delivery(url, delivery)
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        return self.record(url, delivery, status, redelivery=redelivery, when=when)

    def get(self, delivery_id: int) -> HookDelivery | None:
        return next((e for e in self.entries if e.id == delivery_id), None)
