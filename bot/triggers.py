"""What a delivery asks for, read from its payload: a pure translation, no I/O."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from config.hidden_text import strip_hidden_plain

# A diff hunk kept for the agent: GitHub's ends at the commented line, so the tail matters.
MAX_HUNK_CHARS = 8000
MAX_PATH_CHARS = 1000


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
    # Where a review comment was made (JSON, see `review_context`); None for anything else.
    context: str | None = None

    @property
    def thread_id(self) -> int | None:
        """The comment a reply goes under: a review thread's first comment, else the comment."""
        if self.context is None:
            return self.comment_id
        root = json.loads(self.context).get("in_reply_to_id")
        return int(root) if isinstance(root, int) else self.comment_id

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
    trigger = _from_pull_item(data, "pull_request_review_comment", "comment", "review_comment")
    return dataclasses.replace(trigger, context=json.dumps(review_context(data["comment"])))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _tail(text: str, limit: int) -> str:
    """The last whole lines of `text` that fit in `limit` characters."""
    if len(text) <= limit:
        return text
    return text[-limit:].partition("\n")[2]


def review_context(comment: dict[str, Any]) -> dict[str, Any]:
    """Where a review comment sits: path, lines, side and hunk, hidden text stripped.

    An outdated comment (its line no longer in the diff: `line` null, `original_line` set)
    keeps the lines it was written on (`original_*`)."""
    line, original = _int_or_none(comment.get("line")), _int_or_none(comment.get("original_line"))
    outdated = line is None and original is not None
    prefix = "original_" if outdated else ""
    hunk = strip_hidden_plain(str(comment.get("diff_hunk") or ""))
    return {
        "path": strip_hidden_plain(str(comment.get("path") or ""))[:MAX_PATH_CHARS],
        "start_line": _int_or_none(comment.get(f"{prefix}start_line")),
        "line": _int_or_none(comment.get(f"{prefix}line")),
        "side": comment.get("side") if comment.get("side") in ("LEFT", "RIGHT") else None,
        "start_side": comment.get("start_side")
        if comment.get("start_side") in ("LEFT", "RIGHT")
        else None,
        "outdated": outdated,
        "diff_hunk": _tail(hunk, MAX_HUNK_CHARS),
        "in_reply_to_id": _int_or_none(comment.get("in_reply_to_id")),
    }


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
