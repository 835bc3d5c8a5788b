"""The repository's `triggers` (mention, label, assign, min_permission), cached briefly."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gidgethub.abc import GitHubAPI

from bot.repo_files import default_branch_config
from config.repo_config import AgentConfig, ConfigError, TriggersConfig

log = logging.getLogger(__name__)
CACHE_TTL_S = 60.0


class TriggerCache:
    """One contents-API read per repository per minute, whatever the comment traffic."""

    def __init__(self, ttl: float = CACHE_TTL_S, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, TriggersConfig, AgentConfig]] = {}

    async def get(self, gh: GitHubAPI, repo: str, default_branch: str) -> TriggersConfig:
        """The default branch's triggers; the defaults when the config is broken."""
        return (await self._read(gh, repo, default_branch))[0]

    async def agent(self, gh: GitHubAPI, repo: str, default_branch: str) -> AgentConfig:
        """The default branch's agent section (what a requester may pick from)."""
        return (await self._read(gh, repo, default_branch))[1]

    async def _read(
        self, gh: GitHubAPI, repo: str, default_branch: str
    ) -> tuple[TriggersConfig, AgentConfig]:
        hit = self._entries.get(repo.lower())
        if hit and hit[0] > self._clock():
            return hit[1], hit[2]
        config = await default_branch_config(gh, repo, default_branch)
        if isinstance(config, ConfigError):
            # The task will report the broken config; who may trigger stays the safe default.
            log.info("%s: broken .github/gantry.yml, default triggers apply", repo)
            triggers, agent = TriggersConfig(), AgentConfig()
        else:
            triggers, agent = config.triggers, config.agent
        self._entries[repo.lower()] = (self._clock() + self._ttl, triggers, agent)
        return triggers, agent
