"""Opening and finding Gantry's pull requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gidgethub.abc import GitHubAPI


@dataclass(frozen=True)
class PullRequest:
    """What the rest of Gantry needs to know about a PR it opened or pushed to."""

    number: int
    html_url: str
    head_ref: str


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
