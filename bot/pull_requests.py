"""Opening and finding Gantry's pull requests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gidgethub.abc import GitHubAPI


@dataclass(frozen=True)
class PullRequest:
    """What the rest of Gantry needs to know about a PR it opened or pushed to."""

    number: int
    html_url: str
    head_ref: str


@dataclass(frozen=True)
class PullHead:
    """Where a pull request's code is: its branch and SHA, and whether a fork holds them."""

    ref: str
    sha: str
    fork: bool


def _full_name(end: Mapping[str, Any]) -> str | None:
    repo = end.get("repo")
    name = repo.get("full_name") if isinstance(repo, Mapping) else None
    return str(name).lower() if name else None


def head_of(pull: Mapping[str, Any]) -> PullHead:
    """The head of a pull request object (API or payload); a head whose repository is not
    the base's, or is gone (a deleted fork), is a fork's."""
    head, base = pull["head"], pull["base"]
    source = _full_name(head)
    return PullHead(
        str(head["ref"]), str(head["sha"]), source is None or source != _full_name(base)
    )


async def fetch_head(gh: GitHubAPI, repo: str, number: int) -> PullHead:
    """A pull request's head as GitHub knows it now."""
    pull = await gh.getitem("/repos/{+repo}/pulls/{number}", {"repo": repo, "number": number})
    return head_of(pull)


def pull_of(data: dict[str, Any]) -> PullRequest:
    return PullRequest(int(data["number"]), str(data["html_url"]), str(data["head"]["ref"]))


async def find_open_pull(gh: GitHubAPI, repo: str, branch: str) -> PullRequest | None:
    """The open PR whose head is `branch` in `repo` itself, if any."""
    owner = repo.split("/", 1)[0]
    pulls = await gh.getitem(
        "/repos/{+repo}/pulls{?head,state}",
        {"repo": repo, "head": f"{owner}:{branch}", "state": "open"},
    )
    return pull_of(pulls[0]) if pulls else None


async def open_pull(
    gh: GitHubAPI,
    repo: str,
    *,
    branch: str,
    base: str,
    title: str,
    body: str,
    draft: bool,
    labels: list[str],
) -> PullRequest:
    """Open the PR (or return the one that is already open for the branch), then label it."""
    found = await find_open_pull(gh, repo, branch)
    if found is not None:
        return found
    data = await gh.post(
        "/repos/{+repo}/pulls",
        {"repo": repo},
        data={"title": title, "head": branch, "base": base, "body": body, "draft": draft},
    )
    pull = pull_of(data)
    if labels:
        await gh.post(
            "/repos/{+repo}/issues/{number}/labels",
            {"repo": repo, "number": pull.number},
            data={"labels": labels},
        )
    return pull
