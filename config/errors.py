"""The project's exception base and the errors raised while reading settings."""

from __future__ import annotations


class GantryError(Exception):
    """Base class of every error Gantry raises on purpose."""


class SettingsError(GantryError):
    """The server settings are invalid; `problems` holds one readable line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
