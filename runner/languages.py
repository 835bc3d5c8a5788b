"""Language pinning: the `languages:` of the config as the image's `gantry-select` call."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from config.errors import GantryError

SELECT_PROGRAM = "gantry-select"
# gantry-select's exit status when a requested version (or language) is not in the image.
ABSENT_STATUS = 3
MISSING_PROGRAM_STATUS = 127


class LanguageSelectionError(GantryError):
    """The image cannot give the requested language versions; the message says what it has."""


def select_argv(languages: Mapping[str, str]) -> list[str]:
    """`gantry-select node=20 python=3.11` as an argument list, languages sorted."""
    return [SELECT_PROGRAM, *(f"{lang}={version}" for lang, version in sorted(languages.items()))]


def describe(languages: Mapping[str, str]) -> str:
    """`node 20, python 3.11` for the task log and `validate` (or `image defaults`)."""
    if not languages:
        return "image defaults"
    return ", ".join(f"{lang} {version}" for lang, version in sorted(languages.items()))


def selection_error(image: str, languages: Mapping[str, str], status: int, output: str) -> str:
    """The task's failure reason when `gantry-select` refused, from its own words."""
    if status == MISSING_PROGRAM_STATUS:
        return (
            f"languages: {describe(languages)} requested, but the image {image} has no "
            f"{SELECT_PROGRAM} (use a Gantry image, see docs/images.md, or drop `languages`)"
        )
    said = "; ".join(line.removeprefix(f"{SELECT_PROGRAM}: ") for line in output.splitlines())
    return f"languages: {said or f'{SELECT_PROGRAM} exit code {status}'} (image {image})"


def shell_command(languages: Mapping[str, str]) -> str:
    """The selection as one shell command line."""
    return shlex.join(select_argv(languages))
