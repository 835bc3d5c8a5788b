"""Branch names for Gantry's work: `gantry/<number>-<slug>`, valid for git and unique."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Protocol

from config.errors import GantryError
from runner import host_git
from runner.host_git import HostGitError
from runner.task import TaskBranch

SLUG_MAX_CHARS = 40
FALLBACK_SLUG = "task"
NON_SLUG = re.compile(r"[^a-z0-9]+")


class BranchNameError(GantryError):
    """No valid branch name could be made."""


def slugify(text: str, limit: int = SLUG_MAX_CHARS) -> str:
    """Lowercase ASCII words joined by `-`: whatever the title holds, only `[a-z0-9-]` remains."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = NON_SLUG.sub("-", ascii_text.lower()).strip("-")
    if len(slug) > limit:
        slug = slug[:limit].rsplit("-", 1)[0] if "-" in slug[:limit] else slug[:limit]
    return slug.strip("-") or FALLBACK_SLUG


def branch_name(prefix: str, number: int, title: str, existing: Collection[str]) -> str:
    """`<prefix><number>-<slug>`, with `-2`, `-3`… when that name is taken."""
    base = f"{prefix}{number}-{slugify(title)}"
    if base not in existing:
        return base
    for n in range(2, 1000):
        candidate = f"{base}-{n}"
        if candidate not in existing:
            return candidate
    raise BranchNameError(f"no free branch name after {base}-999")


async def check_ref_format(branch: str) -> None:
    """Ask git itself; refuse what it refuses (`git check-ref-format --branch`)."""
    if branch.startswith("-"):
        raise BranchNameError(f"not a valid branch name: {branch!r}")
    try:
        await host_git.run(["check-ref-format", "--branch", branch])
    except HostGitError:
        raise BranchNameError(f"not a valid branch name: {branch!r}") from None


class BranchLedger(Protocol):
    """Where a task's branch and PR are kept across crashes (the task store)."""

    async def task_branch(self, task_id: int) -> TaskBranch | None: ...

    async def fix_branch(self, task_id: int, branch: str) -> str: ...

    async def record_pull(self, task_id: int, pull_url: str) -> None: ...

    async def record_commit(self, task_id: int, start_sha: str, commit_sha: str) -> None: ...


@dataclass
class MemoryLedger:
    """A ledger that lasts as long as the process (tests, one-off runs)."""

    kept: dict[int, TaskBranch] = field(default_factory=dict)

    async def task_branch(self, task_id: int) -> TaskBranch | None:
        return self.kept.get(task_id)

    async def fix_branch(self, task_id: int, branch: str) -> str:
        """The first name kept for a task wins."""
        return self.kept.setdefault(task_id, TaskBranch(branch)).branch

    async def record_pull(self, task_id: int, pull_url: str) -> None:
        kept = self.kept.get(task_id)
        if kept is not None:
            self.kept[task_id] = replace(kept, pull_url=pull_url)

    async def record_commit(self, task_id: int, start_sha: str, commit_sha: str) -> None:
        kept = self.kept.get(task_id)
        if kept is not None:
            self.kept[task_id] = replace(kept, start_sha=start_sha, commit_sha=commit_sha)
