"""What a delivery asks for, read from its payload: a pure translation, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Trigger:
    """A comment, review, assignment or label that may start a task."""

    event: str
    repo: str
    installation_id: int
    clone_url: str
    default_branch: str
    number: int
    is_pull_request: bool
    title: str
    comment_id: int | None
    comment_kind: str
    author: str
    author_type: str
    body: str
    head_ref: str | None = None
    head_sha: str | None = None
    thread_body: str = ""

    @property
    def owner(self) -> str:
        return self.repo.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repo.split("/", 1)[1]


def _repo_fields(data: dict[str, Any]) -> dict[str, Any]:
    repo = data["repository"]
    return {
        "repo": repo["full_name"],
        "installation_id": int(data["installation"]["id"]),
        "clone_url": repo["clone_url"],
        "default_branch": repo.get("default_branch") or "main",
    }


def from_issue_comment(data: dict[str, Any]) -> Trigger:
    """`issue_comment`: a comment on an issue or on a pull request's conversation."""
    issue, comment = data["issue"], data["comment"]
    return Trigger(
        event="issue_comment",
        **_repo_fields(data),
        number=int(issue["number"]),
        is_pull_request="pull_request" in issue,
        title=issue.get("title") or "",
        comment_id=int(comment["id"]),
        comment_kind="issue_comment",
        author=comment["user"]["login"],
        author_type=comment["user"].get("type", "User"),
        body=comment.get("body") or "",
        thread_body=issue.get("body") or "",
    )


def _from_pull_item(data: dict[str, Any], event: str, key: str, kind: str) -> Trigger:
    """A comment or review on a pull request: the payload carries the PR's head."""
    pull, item = data["pull_request"], data[key]
    return Trigger(
        event=event,
        **_repo_fields(data),
        number=int(pull["number"]),
        is_pull_request=True,
        title=pull.get("title") or "",
        comment_id=int(item["id"]),
        comment_kind=kind,
        author=item["user"]["login"],
        author_type=item["user"].get("type", "User"),
        body=item.get("body") or "",
        head_ref=pull["head"]["ref"],
        head_sha=pull["head"]["sha"],
        thread_body=pull.get("body") or "",
    )


def from_review_comment(data: dict[str, Any]) -> Trigger:
    """`pull_request_review_comment`: a comment on a line of a pull request's diff."""
    return _from_pull_item(data, "pull_request_review_comment", "comment", "review_comment")


def from_review(data: dict[str, Any]) -> Trigger:
    """`pull_request_review`: the body of a submitted review (reviews take no reactions)."""
    return _from_pull_item(data, "pull_request_review", "review", "review")


def from_issue(data: dict[str, Any]) -> Trigger:
    """`issues.assigned` / `issues.labeled`: the issue itself is the request."""
    issue, sender = data["issue"], data["sender"]
    title, body = issue.get("title") or "", issue.get("body") or ""
    return Trigger(
        event="issues",
        **_repo_fields(data),
        number=int(issue["number"]),
        is_pull_request="pull_request" in issue,
        title=title,
        comment_id=None,
        comment_kind="issue",
        author=sender["login"],
        author_type=sender.get("type", "User"),
        body=f"{title}\n\n{body}".strip(),
        thread_body=body,
    )


def is_from_a_bot(trigger: Trigger, bot_login: str) -> bool:
    """Bots never trigger; Gantry's own comments least of all."""
    return (
        trigger.author_type == "Bot"
        or trigger.author.lower()
        in {
            bot_login.lower(),
            f"{bot_login.lower()}[bot]",
        }
        or trigger.author.lower().endswith("[bot]")
    )
