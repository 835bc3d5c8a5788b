"""What a patch may carry out of the container: size, secrets and workflow files. Pure."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass

from config.errors import GantryError

MAX_PATCH_BYTES = 10 * 1024 * 1024
WORKFLOWS_DIR = ".github/workflows/"
MIN_SECRET_CHARS = 4  # shorter values would match everywhere and prove nothing
HEADER = re.compile(
    rb"^(?:diff --git (?P<pair>.+)|--- (?P<old>.+)|\+\+\+ (?P<new>.+)|"
    rb"(?:rename|copy) (?:from|to) (?P<moved>.+))$",
    re.MULTILINE,
)
C_ESCAPES = {
    "n": "\n",
    "t": "\t",
    '"': '"',
    "\\": "\\",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "r": "\r",
    "v": "\v",
}


class PatchRefusedError(GantryError):
    """The patch cannot be published; the message says why and what to do."""


@dataclass(frozen=True)
class PatchPolicy:
    """Limits set by the operator: size, and whether workflow files may change."""

    max_bytes: int = MAX_PATCH_BYTES
    allow_workflows: bool = False


def unquote(path: str) -> str:
    """git's C-style quoted path (`"a/t\\303\\251st"`) back to text."""
    if not (path.startswith('"') and path.endswith('"')):
        return path
    raw = bytearray()
    body, i = path[1:-1], 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567":
                raw.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            raw += C_ESCAPES.get(nxt, nxt).encode()
            i += 2
            continue
        raw += char.encode()
        i += 1
    return raw.decode("utf-8", "replace")


def _strip_prefix(path: str) -> str | None:
    if path == "/dev/null":
        return None
    return path[2:] if path[:2] in ("a/", "b/") else path


def _pair_paths(pair: str) -> list[str]:
    """`diff --git a/X b/Y`: quoted or not; unquoted names with spaces split at ` b/`."""
    if pair.startswith('"'):
        quoted = re.findall(r'"(?:[^"\\]|\\.)*"|\S+', pair)
        return [unquote(p) for p in quoted]
    half = pair.find(" b/")
    return [pair[:half], pair[half + 1 :]] if half > 0 else pair.split(" ", 1)


def changed_paths(patch: bytes) -> set[str]:
    """Every path a `git diff --binary` patch touches, old and new names of renames included."""
    paths: set[str] = set()
    for match in HEADER.finditer(patch):
        group = next(name for name, value in match.groupdict().items() if value is not None)
        text = match[group].decode("utf-8", "replace").split("\t")[0]
        found = _pair_paths(text) if group == "pair" else [unquote(text)]
        if group == "moved":
            paths.add(unquote(text))
            continue
        paths.update(p for p in map(_strip_prefix, map(unquote, found)) if p)
    return paths


def secret_forms(value: str) -> set[bytes]:
    """A secret as it could appear in a patch: raw, and base64-encoded."""
    raw = value.encode()
    forms = {raw, base64.b64encode(raw).rstrip(b"=")}
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


def check_patch(patch: bytes, secrets: Iterable[str], policy: PatchPolicy) -> None:
    """Raise `PatchRefusedError` when the patch must not leave the container."""
    if len(patch) > policy.max_bytes:
        raise PatchRefusedError(
            f"the change is {len(patch):,} bytes, over the limit of {policy.max_bytes:,}; "
            "ask for a smaller change, or check that build output is git-ignored"
        )
    for value in secrets:
        if any(form in patch for form in secret_forms(value)):
            raise PatchRefusedError(
                "the change contains the value of a secret; nothing was published"
            )
    workflows = sorted(p for p in changed_paths(patch) if p.startswith(WORKFLOWS_DIR))
    if workflows and not policy.allow_workflows:
        raise PatchRefusedError(
            f"the change touches {', '.join(workflows)}; the App has no workflows permission, "
            "so GitHub would refuse the push. Change workflow files by hand, or let the "
            "operator grant the permission"
        )
