"""What a patch may carry out of the container: size, expanded size, secrets, workflows. Pure.

The raw patch is judged for its size, the secrets in it and what it would expand to; which
paths it changes and how many bytes it writes are judged on what the host's git applied
(`AppliedChange`), never on headers the container wrote.
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from config.errors import GantryError

MAX_PATCH_BYTES = 10 * 1024 * 1024
MAX_EXPANDED_BYTES = 100 * 1024 * 1024
BINARY_START = b"GIT binary patch"
BINARY_HUNK = re.compile(rb"(literal|delta) ([0-9]{1,20})")
DELTA_HEADER_BYTES = 20  # two base-128 varints: the source size, then the result size
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
    """Limits set by the operator: size, expanded size, and whether workflows may change."""

    max_bytes: int = MAX_PATCH_BYTES
    max_expanded_bytes: int = MAX_EXPANDED_BYTES
    allow_workflows: bool = False


@dataclass(frozen=True)
class AppliedChange:
    """What the host's own git made of a patch: the paths it changed, the bytes it wrote, and
    the paths it made submodule links (gitlinks) that were none before."""

    paths: tuple[str, ...]
    new_bytes: int
    new_gitlinks: tuple[str, ...] = ()


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
    """The first component goes, whatever it is, as `git apply -p1` does."""
    if path == "/dev/null":
        return None
    return path.lstrip("/").partition("/")[2] or path


def _pair_paths(pair: str) -> list[str]:
    """`diff --git a/X b/Y`: quoted or not; unquoted names with spaces split at ` b/`."""
    if pair.startswith('"'):
        quoted = re.findall(r'"(?:[^"\\]|\\.)*"|\S+', pair)
        return [unquote(p) for p in quoted]
    half = pair.find(" b/")
    return [pair[:half], pair[half + 1 :]] if half > 0 else pair.split(" ", 1)


def changed_paths(patch: bytes) -> set[str]:
    """The paths a patch's headers name, for people to read; decisions use `AppliedChange`."""
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


def _varint(data: bytes, start: int) -> tuple[int, int]:
    """A git delta header's base-128 varint at `start`: its value and where the next begins."""
    value, shift, i = 0, 0, start
    while i < len(data):
        value |= (data[i] & 0x7F) << shift
        shift, i = shift + 7, i + 1
        if not data[i - 1] & 0x80:
            return value, i
    raise PatchRefusedError("a binary delta in the change has no readable size")


def _line_bytes(line: bytes) -> bytes:
    """One line of a git binary hunk: a length letter, then base85."""
    length = line[0] - (ord("A") - 1) if line[:1].isupper() else line[0] - (ord("a") - 27)
    return base64.b85decode(line[1:])[:length]


def delta_result_size(lines: Sequence[bytes]) -> int:
    """The size a `delta` hunk's result has, read by inflating only its first bytes."""
    inflater, head = zlib.decompressobj(), b""
    try:
        for line in lines:
            if not line or len(head) >= DELTA_HEADER_BYTES:
                break
            head += inflater.decompress(_line_bytes(line), DELTA_HEADER_BYTES - len(head))
    except (ValueError, zlib.error):
        raise PatchRefusedError("a binary delta in the change is corrupt") from None
    _, after_source = _varint(head, 0)
    return _varint(head, after_source)[0]


def binary_sizes(patch: bytes) -> list[int]:
    """What each binary file of a patch expands to (git applies the first hunk of each)."""
    lines, sizes = patch.split(b"\n"), []
    for i, line in enumerate(lines[:-1]):
        if line != BINARY_START:
            continue
        hunk = BINARY_HUNK.fullmatch(lines[i + 1])
        if hunk is None:
            raise PatchRefusedError("a binary hunk in the change has no size")
        literal = hunk[1] == b"literal"
        sizes.append(int(hunk[2]) if literal else delta_result_size(lines[i + 2 :]))
    return sizes


def expanded_size(patch: bytes) -> int:
    """An upper bound on the bytes a patch writes: text cannot grow, binary says its size."""
    return len(patch) + sum(binary_sizes(patch))


def too_large(what: str, size: int, limit: int) -> PatchRefusedError:
    """The refusal for a change over a size limit."""
    return PatchRefusedError(
        f"the change {what} {size:,} bytes, over the limit of {limit:,}; "
        "ask for a smaller change, or check that build output is git-ignored"
    )


def check_patch(patch: bytes, secrets: Iterable[str], policy: PatchPolicy) -> None:
    """Raise `PatchRefusedError` when the raw patch must not reach the host's git."""
    if len(patch) > policy.max_bytes:
        raise too_large("is", len(patch), policy.max_bytes)
    if holds_secret(patch, secrets):
        raise PatchRefusedError("the change contains the value of a secret; nothing was published")
    check_expanded(patch, policy.max_expanded_bytes)


def check_message(message: bytes, secrets: Iterable[str]) -> None:
    """Raise `PatchRefusedError` when the agent's commit messages hold a secret's value: they
    become the commit's message and the PR's description."""
    if holds_secret(message, secrets):
        raise PatchRefusedError(
            "the agent's commit message contains the value of a secret; nothing was published"
        )


def holds_secret(data: bytes, secrets: Iterable[str]) -> bool:
    """Whether any secret's value is in `data`, in any of the forms it may take there."""
    return any(form in data for value in secrets for form in secret_forms(value))


def check_expanded(patch: bytes, limit: int) -> None:
    """Refuse a patch that would expand past `limit`, before anything is written."""
    size = expanded_size(patch)
    if size > limit:
        raise too_large("expands to", size, limit)


def nested_repos_refusal(paths: Sequence[str], what: str) -> PatchRefusedError:
    """The refusal of directories the agent made git repositories of their own, by name."""
    return PatchRefusedError(
        f"the change makes {', '.join(paths)} a nested git repository {what}; remove its "
        ".git directory so that its files are published instead"
    )


def check_change(change: AppliedChange, policy: PatchPolicy) -> None:
    """Raise `PatchRefusedError` when what the host applied must not be published."""
    if change.new_bytes > policy.max_expanded_bytes:
        raise too_large("writes", change.new_bytes, policy.max_expanded_bytes)
    if change.new_gitlinks:
        raise nested_repos_refusal(
            change.new_gitlinks,
            "(a submodule link to a commit that only the agent's container has)",
        )
    workflows = sorted(p for p in change.paths if p.startswith(WORKFLOWS_DIR))
    if workflows and not policy.allow_workflows:
        raise PatchRefusedError(
            f"the change touches {', '.join(workflows)}; the App has no workflows permission, "
            "so GitHub would refuse the push. Change workflow files by hand, or let the "
            "operator grant the permission"
        )
