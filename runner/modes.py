"""Modes other than code: what the agent is told, and the file it leaves for Gantry to post.

`GANTRY_MODE` is `code` (a patch), `ask` (`answer.md`), `plan` (`plan.md`) or `review`
(`review.json`). The output file is read from the container like the patch: never through a
link, only a regular file, size-capped before a byte is read; then parsed here (pure) so that
a malformed file fails the task with a clear reason and nothing is half-posted.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from config.errors import GantryError
from config.repo_config import SEVERITIES, RepoConfig, Severity
from runner.collect import output_dir
from runner.executor import RunningEnvironment
from runner.patch_policy import PatchRefusedError


class Mode(StrEnum):
    """What the agent is asked for (`GANTRY_MODE`)."""

    CODE = "code"
    ASK = "ask"
    PLAN = "plan"
    REVIEW = "review"


OUTPUT_FILES = {Mode.ASK: "answer.md", Mode.PLAN: "plan.md", Mode.REVIEW: "review.json"}
MAX_TEXT_BYTES = 60 * 1024  # an issue comment holds 65,536 characters
MAX_REVIEW_BYTES = 256 * 1024
MAX_FINDINGS = 200
MAX_FINDING_CHARS = 8000
MAX_PATH_CHARS = 1000
WORKSPACE_PREFIX = "/workspace/"

# How the progress comment ends, after the link to what was posted.
ANSWERED_TEXT = {Mode.ASK: "answered", Mode.PLAN: "planned", Mode.REVIEW: "reviewed"}
INSTRUCTIONS = {
    Mode.ASK: (
        "You are in Gantry's ask mode: answer the question below about this repository. "
        "Read whatever you need, but do not change any file of the repository. Write your "
        "answer as Markdown to {path}; that file is posted as a comment, nothing else is."
    ),
    Mode.PLAN: (
        "You are in Gantry's plan mode: write a step-by-step plan for the request below "
        "(which files change and how, what to test). Do not change any file of the "
        "repository: a later run carries the plan out. Write the plan as Markdown to {path}; "
        "that file is posted as a comment, nothing else is."
    ),
    Mode.REVIEW: (
        "You are in Gantry's review mode: review the changes this pull request makes{base}. "
        "Do not change any file of the repository. Write your findings to {path} as a JSON "
        'array of objects {{"path": "<file relative to the repository root>", "line": '
        '<line number in the file as it is now>, "severity": "info" | "low" | "medium" | '
        '"high" | "critical", "body": "<what is wrong and how to fix it, Markdown>"}}; '
        "write [] when you find nothing. Only that file is posted, as one pull request review."
    ),
}


class OutputError(GantryError):
    """The agent's output file is missing, too large or not what the mode's schema says."""


@dataclass(frozen=True)
class Finding:
    """One review finding: where (path and line in the head's version), how bad, and what."""

    path: str
    line: int
    severity: Severity
    body: str


@dataclass(frozen=True)
class Answer:
    """What a mode produced: the text (ask, plan) or the findings (review)."""

    mode: Mode
    text: str = ""
    findings: tuple[Finding, ...] = ()
    # The commit the agent read (a pull request's head when the task started), once known.
    sha: str | None = None


class AnswerPoster(Protocol):
    """Posts a mode's answer (a comment, a review) and returns its URL."""

    async def post(self, answer: Answer, config: RepoConfig) -> str: ...


Path = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATH_CHARS)]
Body = Annotated[str, StringConstraints(min_length=1, max_length=MAX_FINDING_CHARS)]


class FindingModel(BaseModel):
    """`review.json`'s item schema (strict: no unknown keys, no strings for numbers)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    path: Path
    line: Annotated[int, Field(ge=1, le=10_000_000)]
    severity: Severity
    body: Body


FINDINGS = TypeAdapter(Annotated[list[FindingModel], Field(max_length=MAX_FINDINGS)])


def mode_of(kind: str) -> Mode:
    """The mode of a stored task kind (`request` and `exec` are code)."""
    return Mode(kind) if kind in Mode.__members__.values() else Mode.CODE


def output_path(mode: Mode, scratch: str) -> str:
    return f"{output_dir(scratch)}/{OUTPUT_FILES[mode]}"


def mode_variables(mode: Mode, scratch: str) -> dict[str, str]:
    """The contract's variables for the agent step."""
    return {"GANTRY_MODE": mode.value, "GANTRY_OUTPUT_DIR": output_dir(scratch)}


def instructions(
    mode: Mode, scratch: str, base_sha: str | None = None, rules: Sequence[str] = ()
) -> str:
    """What a preset tells its CLI before the request (nothing in code mode); a review gets
    the commit its changes start from and the repository's review rules from AGENTS.md."""
    if mode is Mode.CODE:
        return ""
    base = f" (`git diff {base_sha} HEAD` shows them)" if base_sha else ""
    text = INSTRUCTIONS[mode].format(path=output_path(mode, scratch), base=base)
    if mode is Mode.REVIEW and rules:
        text += "\n\nThe repository's review rules (from AGENTS.md):\n\n" + "\n\n".join(rules)
    return text


def size_limit(mode: Mode) -> int:
    return MAX_REVIEW_BYTES if mode is Mode.REVIEW else MAX_TEXT_BYTES


def parse_output(mode: Mode, data: bytes) -> Answer:
    """The mode's file as an answer; `OutputError` says what is wrong with it."""
    name = OUTPUT_FILES[mode]
    if not data.strip():
        raise OutputError(f"the agent wrote no {name} in $GANTRY_OUTPUT_DIR (or left it empty)")
    if len(data) > size_limit(mode):
        raise OutputError(f"{name} is {len(data):,} bytes, over the limit of {size_limit(mode):,}")
    if mode is not Mode.REVIEW:
        return Answer(mode, text=data.decode(errors="replace").strip())
    return Answer(mode, findings=parse_findings(data))


def parse_findings(data: bytes) -> tuple[Finding, ...]:
    """`review.json`: a JSON array of findings, every one valid, or an `OutputError`."""
    try:
        items = FINDINGS.validate_python(json.loads(data))
    except json.JSONDecodeError as exc:
        raise OutputError(f"review.json is not JSON: {exc.msg} at line {exc.lineno}") from None
    except ValidationError as exc:
        raise OutputError(f"review.json does not follow the schema: {describe(exc)}") from None
    findings = []
    for item in items:
        path = normal_path(item.path)
        if path is None:
            raise OutputError(f"review.json names a path outside the repository: {item.path!r}")
        findings.append(Finding(path, item.line, item.severity, item.body.strip()))
    return tuple(findings)


def describe(exc: ValidationError, limit: int = 3) -> str:
    """The first few schema errors as `[0].line: Input should be a valid integer`."""
    parts = []
    for error in exc.errors()[:limit]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        parts.append(f"{where or 'the file'}: {error['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def normal_path(path: str) -> str | None:
    """A repository-relative path (`./a`, `/workspace/a` → `a`); None when it leaves the tree."""
    path = path.removeprefix(WORKSPACE_PREFIX)
    clean = posixpath.normpath(path)
    if clean.startswith(("/", "../")) or clean in (".", ".."):
        return None
    return clean


def at_least(findings: Sequence[Finding], minimum: Severity) -> list[Finding]:
    """The findings at or above the configured severity."""
    floor = SEVERITIES.index(minimum)
    return [f for f in findings if SEVERITIES.index(f.severity) >= floor]


def redact(answer: Answer, values: Sequence[str]) -> Answer:
    """The answer with any secret value the task knows blanked out (the agent never gets
    secrets, but setup may have left one in a file it read)."""

    def clean(text: str) -> str:
        for value in values:
            if value:
                text = text.replace(value, "***")
        return text

    findings = tuple(
        Finding(clean(f.path), f.line, f.severity, clean(f.body)) for f in answer.findings
    )
    return Answer(answer.mode, clean(answer.text), findings, answer.sha)


async def read_output(env: RunningEnvironment, mode: Mode) -> Answer:
    """The mode's file from the environment, read safely and parsed."""
    limit = size_limit(mode)
    try:
        data = await env.read_file(output_path(mode, env.scratch), limit)
    except PatchRefusedError as exc:
        raise OutputError(f"{OUTPUT_FILES[mode]}: {exc}") from None
    return parse_output(mode, data)
