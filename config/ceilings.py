"""The operator's ceilings (`GANTRY_MAX_*`, `GANTRY_ALLOWED_*`): what no config may exceed.

Pure. A number above its ceiling is capped; a network policy wider than the ceiling is
narrowed; an agent or image the operator does not allow is refused (no capping makes sense
there); `agent.allow` entries the operator does not allow are dropped. The server's own
defaults (`DEFAULT_IMAGE`, `AGENT_COMMAND`, `AGENT_PRESET`/`AGENT_MODEL`) are always allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Any

from config.durations import format_duration, format_size
from config.repo_config import NETWORK_MODES, RepoConfig
from config.settings import ENV_PREFIX, Settings

COMMAND_AGENT = "command"


@dataclass(frozen=True)
class Capping:
    """A value lowered to the operator's ceiling."""

    path: str
    asked: str
    limit: str
    setting: str
    why: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.asked} capped at {self.limit} by the operator ({self.setting})"

    @property
    def reason(self) -> str:
        """`8g is above GANTRY_MAX_MEMORY=2g`."""
        return self.why or f"{self.asked} is above {self.setting}={self.limit}"


@dataclass(frozen=True)
class Refusal:
    """A value the operator does not allow, and what is allowed instead."""

    path: str
    message: str


@dataclass(frozen=True)
class Ceiling:
    """One numeric ceiling: the config field, the setting, how to show a value."""

    section: str
    field: str
    setting: str
    show: Callable[[Any], str]


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


CEILINGS = (
    Ceiling("resources", "cpus", "max_cpus", _number),
    Ceiling("resources", "memory", "max_memory", format_size),
    Ceiling("resources", "pids", "max_pids", _number),
    Ceiling("resources", "disk", "max_disk", format_size),
    Ceiling("timeouts", "setup", "max_timeout_setup", format_duration),
    Ceiling("timeouts", "agent", "max_timeout_agent", format_duration),
    Ceiling("timeouts", "checks", "max_timeout_checks", format_duration),
)
BUDGET_CEILINGS = (
    Ceiling("budget", "requests", "max_agent_requests", _number),
    Ceiling("budget", "tokens", "max_agent_tokens", _number),
    Ceiling("budget", "time", "max_agent_time", format_duration),
)


def setting_name(attribute: str) -> str:
    return f"{ENV_PREFIX}{attribute.upper()}"


def apply_ceilings(
    config: RepoConfig, settings: Settings
) -> tuple[RepoConfig, list[Capping], list[Refusal]]:
    """The config with every value at or below the operator's ceilings, what was capped,
    and what is refused outright."""
    cappings: list[Capping] = []
    update: dict[str, Any] = {}
    for section in ("resources", "timeouts"):
        update[section] = _capped(getattr(config, section), section, settings, cappings)
    update["network"] = _narrowed(config, settings, cappings)
    update["agent"] = _agent(config, settings, cappings)
    refusals = _refused_image(config, settings) + _refused_agent(config, settings)
    return config.model_copy(update=update), cappings, refusals


def _capped(section: Any, name: str, settings: Settings, cappings: list[Capping]) -> Any:
    """A section with its numeric fields at or below their ceilings."""
    update = {}
    for ceiling in CEILINGS + BUDGET_CEILINGS:
        limit = _limit(settings, ceiling.setting)
        value = getattr(section, ceiling.field, None)
        if ceiling.section != name or limit is None or value is None or value <= limit:
            continue
        update[ceiling.field] = limit
        path = f"{'agent.budget' if name == 'budget' else name}.{ceiling.field}"
        setting = setting_name(ceiling.setting)
        cappings.append(Capping(path, ceiling.show(value), ceiling.show(limit), setting))
    return section.model_copy(update=update) if update else section


def _limit(settings: Settings, attribute: str) -> Any:
    limit = getattr(settings, attribute)
    # MAX_AGENT_TIME is in seconds; the config's budget time is a duration.
    return timedelta(seconds=limit) if attribute == "max_agent_time" else limit


def _narrowed(config: RepoConfig, settings: Settings, cappings: list[Capping]) -> Any:
    """Each phase's network no wider than `MAX_NETWORK` (off < limited < full)."""
    ceiling = settings.max_network
    update = {}
    for phase in ("setup", "agent"):
        mode = getattr(config.network, phase)
        if NETWORK_MODES.index(mode) > NETWORK_MODES.index(ceiling):
            update[phase] = ceiling
            setting = setting_name("max_network")
            cappings.append(Capping(f"network.{phase}", mode, ceiling, setting))
    return config.network.model_copy(update=update) if update else config.network


def _agent(config: RepoConfig, settings: Settings, cappings: list[Capping]) -> Any:
    """The budget capped, and `agent.allow` without what the operator does not allow."""
    agent = config.agent
    budget = _capped(agent.budget, "budget", settings, cappings)
    allowed = settings.allowed_agents
    if allowed is None:
        return agent.model_copy(update={"budget": budget})
    kept = tuple(name for name in agent.allow if _allow_entry_allowed(name, allowed))
    if kept != agent.allow:
        asked, limit = f"[{', '.join(agent.allow)}]", f"[{', '.join(kept)}]"
        setting = setting_name("allowed_agents")
        dropped = ", ".join(name for name in agent.allow if name not in kept)
        why = f"{dropped} dropped: not in {setting}={','.join(allowed)}"
        cappings.append(Capping("agent.allow", asked, limit, setting, why))
    return agent.model_copy(update={"budget": budget, "allow": kept})


def agent_allowed(allowed: tuple[str, ...], preset: str, model: str | None) -> bool:
    """Whether `preset` with `model` matches an entry like `codex` or `claude:claude-*`."""
    for entry in allowed:
        name, _, pattern = entry.partition(":")
        if name == preset and (not pattern or (model is not None and fnmatchcase(model, pattern))):
            return True
    return False


def _allow_entry_allowed(entry: str, allowed: tuple[str, ...]) -> bool:
    """An `agent.allow` entry: `codex` (any model) needs the operator's plain `codex`."""
    preset, _, model = entry.partition(":")
    if not model:
        return preset in allowed
    return agent_allowed(allowed, preset, model)


def _refused_agent(config: RepoConfig, settings: Settings) -> list[Refusal]:
    allowed, agent = settings.allowed_agents, config.agent
    if allowed is None:
        return []
    setting = setting_name("allowed_agents")
    listed = ", ".join(allowed)
    own_command = agent.command is not None and agent.command != settings.agent_command
    if own_command and COMMAND_AGENT not in allowed:
        message = f"agent commands are not allowed by the operator ({setting}: {listed})"
        return [Refusal("agent.command", message)]
    if agent.preset is None:
        return []
    if (agent.preset, agent.model) == (settings.agent_preset, settings.agent_model):
        return []
    if agent_allowed(allowed, agent.preset, agent.model):
        return []
    asked = agent.preset + (f":{agent.model}" if agent.model else "")
    # The preset is allowed with other models: the model is what is wrong.
    preset_known = agent.preset in {entry.partition(":")[0] for entry in allowed}
    path = "agent.model" if agent.model and preset_known else "agent.preset"
    return [Refusal(path, f"{asked} is not allowed by the operator ({setting}: {listed})")]


def _refused_image(config: RepoConfig, settings: Settings) -> list[Refusal]:
    """The config's image and each service's image, where the operator does not allow them."""
    patterns = settings.allowed_images
    if patterns is None:
        return []
    named = [("image", config.image)]
    named += [(f"services.{name}.image", s.image) for name, s in config.services.items()]
    listed = ", ".join(patterns)
    return [
        Refusal(path, f"{image} is not allowed by the operator "
                f"({setting_name('allowed_images')}: {listed})")
        for path, image in named
        if image != settings.default_image
        and not any(fnmatchcase(image, pattern) for pattern in patterns)
    ]  # fmt: skip
