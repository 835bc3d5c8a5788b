"""Per-task tokens: random, looked up by their hash, revoked at once."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "gantry-"  # noqa: S105


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenRegistry:
    """Which task a token belongs to; only hashes are kept, compared in constant time."""

    def __init__(self) -> None:
        self._tasks: dict[bytes, str] = {}
        self._digests: dict[str, bytes] = {}

    def issue(self, task_id: str) -> str:
        """A fresh token for `task_id`, replacing any earlier one."""
        self.revoke(task_id)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = _digest(token)
        self._tasks[digest] = task_id
        self._digests[task_id] = digest
        return token

    def task_of(self, token: str) -> str | None:
        """The task a token belongs to, or None for an unknown or revoked token."""
        digest = _digest(token)
        task_id = self._tasks.get(digest)
        if task_id is None or not hmac.compare_digest(self._digests[task_id], digest):
            return None
        return task_id

    def revoke(self, task_id: str) -> None:
        """Make the task's token worthless."""
        digest = self._digests.pop(task_id, None)
        if digest is not None:
            del self._tasks[digest]
