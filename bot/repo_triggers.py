"""The repository's `triggers` (mention, label, assign, min_permission), cached briefly."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gidgethub.abc import GitHubAPI

from bot.repo_files import default_branch_config
from bot.single_flight import SingleFlight
from config.repo_config import AgentConfig, ConfigError, ReviewConfig, TriggersConfig
from config.settings import Settings

log = logging.getLogger(__name__)
CACHE_TTL_S = 60.0

Sections = tuple[TriggersConfig, AgentConfig, ReviewConfig]


async def fetch_sections(
    gh: GitHubAPI, repo: str, default_branch: str, settings: Settings | None = None
) -> Sections:
    """The default branch's triggers, agent and review sections (over the organisation's
    defaults, within the operator's ceilings); the defaults when it is broken."""
    config = await default_branch_config(gh, repo, default_branch, settings)
    if isinstance(config, ConfigError):
        # The task will report the broken config; who may trigger stays the safe default.
        log.info("%s: broken .github/gantry.yml, default triggers apply", repo)
        return TriggersConfig(), AgentConfig(), ReviewConfig()
    return config.triggers, config.agent, config.review


class TriggerCache:
    """One contents-API read per repository per minute, whatever the comment traffic.

    Reads in flight are shared: a burst that arrives before the first answer waits for it."""

    def __init__(
        self,
        ttl: float = CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        settings: Settings | None = None,
    ):
        self._settings = settings
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[float, Sections]] = {}
        self._in_flight: SingleFlight[tuple[str, str], Sections] = SingleFlight()

    async def get(self, gh: GitHubAPI, repo: str, default_branch: str) -> TriggersConfig:
        """The default branch's triggers; the defaults when the config is broken."""
        return (await self._read(gh, repo, default_branch))[0]

    async def agent(self, gh: GitHubAPI, repo: str, default_branch: str) -> AgentConfig:
        """The default branch's agent section (what a requester may pick from)."""
        return (await self._read(gh, repo, default_branch))[1]

    async def review(self, gh: GitHubAPI, repo: str, default_branch: str) -> ReviewConfig:
        """The default branch's review section (whether new pull requests get a review)."""
        return (await self._read(gh, repo, default_branch))[2]

    async def _read(self, gh: GitHubAPI, repo: str, default_branch: str) -> Sections:
        key = (repo.lower(), default_branch)
        hit = self._entries.get(key)
        if hit and hit[0] > self._clock():
            return hit[1]
        return await self._in_flight.run(key, lambda: self._look_up(gh, key, repo))

    async def _look_up(self, gh: GitHubAPI, key: tuple[str, str], repo: str) -> Sections:
        sections = await fetch_sections(gh, repo, key[1], self._settings)
        self._entries[key] = (self._clock() + self._ttl, sections)
        return sections
