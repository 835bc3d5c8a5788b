"""Where each effective config value came from: a default, the server, the organisation's
file, the repository's file, or the operator's ceiling. Pure data and its rendering."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

KeyPath = tuple[str | int, ...]
MISSING = object()
# The server settings that fill what no file set (config/repo_config.apply_server_defaults).
SERVER_SETTINGS = {
    "image": "GANTRY_DEFAULT_IMAGE",
    "agent.command": "GANTRY_AGENT_COMMAND",
    "agent.preset": "GANTRY_AGENT_PRESET",
    "agent.model": "GANTRY_AGENT_MODEL",
}


class Layer(StrEnum):
    DEFAULT = "default"
    SERVER = "server"
    ORG = "org"
    REPOSITORY = "repository"
    CAPPED = "capped by operator"


@dataclass(frozen=True)
class FileLayer:
    """One config file that was read: its layer, its name, the line of every key path."""

    layer: Layer
    source: str
    lines: Mapping[KeyPath, int]


@dataclass(frozen=True)
class ValueOrigin:
    """One effective value and where it came from (for a capped one: who asked for more)."""

    path: str
    value: str
    layer: Layer
    source: str | None = None
    line: int | None = None
    note: str = ""
    # For a capped value: what was asked for, and by which layer.
    asked: str = ""
    asked_by: Layer | None = None

    def describe(self) -> str:
        """`org (acme/.github:.github/gantry.yml:3)`, `default`, `capped by operator: …`."""
        where = f" ({self.source}:{self.line})" if self.source else ""
        if self.layer is Layer.CAPPED:
            asked = (self.asked_by or Layer.DEFAULT).value
            return f"{self.layer.value}: {self.note}, asked by {asked}{where}"
        text = f"{self.layer.value}{where}"
        return f"{text}: {self.note}" if self.note else text


@dataclass(frozen=True)
class Provenance:
    """Every effective value's origin, and the file layers it was read from."""

    values: tuple[ValueOrigin, ...]
    files: tuple[FileLayer, ...] = ()
    # The key paths each file set (index into `files`), after the merge.
    origins: Mapping[KeyPath, int] = field(default_factory=dict)

    def of(self, path: str) -> ValueOrigin | None:
        return next((v for v in self.values if v.path == path), None)

    @property
    def capped(self) -> tuple[ValueOrigin, ...]:
        return tuple(v for v in self.values if v.layer is Layer.CAPPED)

    def set_in(self, path: KeyPath) -> tuple[str, int] | None:
        """The file and line that set `path` (or the part of it a file set); None: no file."""
        found = longest_prefix(path, self.origins)
        if found is None:
            return None
        prefix, index = found
        lines = self.files[index].lines
        return self.files[index].source, lines.get(path, lines.get(prefix, 1))

    def layer_of(self, path: KeyPath) -> Layer | None:
        found = longest_prefix(path, self.origins)
        return None if found is None else self.files[found[1]].layer

    def capped_note(self) -> str:
        """A task report's few words: `capped by the operator: resources.memory 8g → 2g`."""
        if not self.capped:
            return ""
        parts = [f"{v.path} {v.asked} → {v.value}" for v in self.capped]
        return "capped by the operator: " + "; ".join(parts)

    def lines(self) -> list[str]:
        """One aligned `path = value  origin` line per value."""
        width = min(max((len(v.path) + len(v.value) for v in self.values), default=0) + 3, 50)
        return [f"{v.path} = {v.value}".ljust(width) + "  " + v.describe() for v in self.values]


def longest_prefix(path: KeyPath, origins: Mapping[KeyPath, int]) -> tuple[KeyPath, int] | None:
    """The longest prefix of `path` in `origins`, with its value."""
    for end in range(len(path), 0, -1):
        if path[:end] in origins:
            return path[:end], origins[path[:end]]
    return None


def leaves(data: Mapping[str, Any], path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """Every value that is not a non-empty mapping, with its key path."""
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            yield from leaves(value, (*path, key))
        else:
            yield (*path, key), value


def render_value(value: Any) -> str:
    """A value as one short line (a script shows its first line)."""
    if isinstance(value, str):
        first, _, rest = value.strip().partition("\n")
        return first + (" …" if rest else "")
    return json.dumps(value)


def dotted(path: KeyPath) -> str:
    return ".".join(str(part) for part in path)


@dataclass(frozen=True)
class Stages:
    """The config as the files gave it, with the server's defaults, within the ceilings."""

    files: Mapping[str, Any]
    served: Mapping[str, Any]
    capped: Mapping[str, Any]


def trace(
    stages: Stages,
    files: Sequence[FileLayer],
    origins: Mapping[KeyPath, int],
    notes: Mapping[str, str],
    server_paths: Collection[str] = (),
) -> Provenance:
    """The origin of every effective value; `notes` say why a capped path was capped;
    `server_paths` are filled by the server whenever no file sets them (even to the value
    the config's own default would have had)."""
    before = dict(leaves(stages.files))
    served = dict(leaves(stages.served))
    values = []
    for path, value in leaves(stages.capped):
        name = dotted(path)
        found = longest_prefix(path, origins)
        source = files[found[1]] if found else None
        line = source.lines.get(path, source.lines.get(found[0], 1)) if source and found else None
        if served.get(path) != value:
            asked = render_value(served.get(path))
            note = notes.get(name, f"asked for {asked}")
            origin = ValueOrigin(name, render_value(value), Layer.CAPPED, note=note, asked=asked)
            if source is not None:
                origin = replace(origin, source=source.source, line=line, asked_by=source.layer)
            values.append(origin)
        elif before.get(path, MISSING) != value or (name in server_paths and source is None):
            note = SERVER_SETTINGS.get(name, "")
            values.append(ValueOrigin(name, render_value(value), Layer.SERVER, note=note))
        elif source is not None:
            values.append(ValueOrigin(name, render_value(value), source.layer, source.source, line))
        else:
            values.append(ValueOrigin(name, render_value(value), Layer.DEFAULT))
    return Provenance(tuple(values), tuple(files), dict(origins))
