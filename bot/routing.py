"""What every handler receives: the intake and a place to say what the delivery led to."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.intake import Intake, Outcome
from bot.tokens import InstallationTokens


@dataclass
class Dispatch:
    """Passed to `Router.dispatch`; handlers append their outcome."""

    intake: Intake
    delivery_id: str
    tokens: InstallationTokens | None = None
    outcomes: list[Outcome] = field(default_factory=list)
