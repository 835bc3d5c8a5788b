"""GitHub-shaped JSON for the stand-in's records (pure: records and URLs in, dicts out)."""

from __future__ import annotations

import base64
import time
import zlib
from dataclasses import dataclass
from typing import Any

from forge.git_repo import CommitInfo, DiffEntry, TreeEntry
from forge.state import (
    APP_EVENTS,
    APP_PERMISSIONS,
    App,
    CheckRun,
    Comment,
    Installation,
    Issue,
    Pull,
    Reaction,
    Repo,
    User,
)

DOCS_URL = "https://docs.github.com/rest"
REACTION_KEYS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
BASE64_LINE = 60  # GitHub wraps base64 file content at 60 characters.

JSON = dict[str, Any]


@dataclass(frozen=True)
class Urls:
    """Where the stand-in lives: web pages (and git) at `html`, the REST API at `api`."""

    html: str
    api: str

    def repo_api(self, repo: Repo) -> str:
        """`{api}/repos/{owner}/{name}`."""
        return f"{self.api}/repos/{repo.full_name}"

    def repo_html(self, repo: Repo) -> str:
        """`{html}/{owner}/{name}`."""
        return f"{self.html}/{repo.full_name}"


def timestamp(seconds: float) -> str:
    """ISO 8601 in UTC with a `Z`, as GitHub writes times."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def git_date(iso: str) -> str:
    """git's strict ISO date in UTC (`+00:00`) as GitHub writes it (`Z`)."""
    return iso.removesuffix("+00:00") + "Z" if iso.endswith("+00:00") else iso


def node_id(kind: str, ident: int) -> str:
    """An opaque node id in GitHub's legacy format."""
    return base64.b64encode(f"0{len(kind)}:{kind}{ident}".encode()).decode()


def error(message: str, **extra: Any) -> JSON:
    """GitHub's JSON error body."""
    return {"message": message, "documentation_url": DOCS_URL, **extra}


def user(account: User, urls: Urls) -> JSON:
    """A simple-user object."""
    api = f"{urls.api}/users/{account.login}"
    return {
        "login": account.login,
        "id": account.id,
        "node_id": node_id(account.type, account.id),
        "avatar_url": f"{urls.html}/avatars/{account.login}",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{urls.html}/{account.login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": account.type,
        "site_admin": False,
    }


def repository(repo: Repo, urls: Urls) -> JSON:
    """A repository object; `clone_url` points at the stand-in's git server."""
    api = urls.repo_api(repo)
    html = urls.repo_html(repo)
    return {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "owner": user(repo.owner, urls),
        "private": False,
        "visibility": "public",
        "fork": repo.parent is not None,
        "archived": False,
        "disabled": False,
        "html_url": html,
        "url": api,
        "clone_url": f"{html}.git",
        "git_url": f"{html}.git",
        "default_branch": repo.default_branch,
        "pulls_url": f"{api}/pulls{{/number}}",
        "issues_url": f"{api}/issues{{/number}}",
        "contents_url": f"{api}/contents/{{+path}}",
        "permissions": {"admin": False, "maintain": False, "push": True, "pull": True},
    }


def app(record: App, urls: Urls) -> JSON:
    """The App object `GET /app` returns."""
    return {
        "id": record.id,
        "slug": record.slug,
        "node_id": node_id("Integration", record.id),
        "client_id": f"Iv1.{record.id:016x}",
        "owner": user(record.owner, urls),
        "name": record.name,
        "description": record.description,
        "external_url": urls.html,
        "html_url": f"{urls.html}/apps/{record.slug}",
        "created_at": timestamp(0),
        "updated_at": timestamp(0),
        "permissions": dict(APP_PERMISSIONS if record.permissions is None else record.permissions),
        "events": list(APP_EVENTS if record.events is None else record.events),
        "installations_count": 1,
    }


def app_from_manifest(record: App, urls: Urls) -> JSON:
    """`POST /app-manifests/{code}/conversions`: the App plus the secrets shown only once."""
    return {
        **app(record, urls),
        "installations_count": 0,
        "client_secret": record.client_secret,
        "webhook_secret": record.webhook_secret,
        "pem": record.keys.private_pem,
    }


def installation(record: Installation, urls: Urls) -> JSON:
    """An installation object."""
    return {
        "id": record.id,
        "account": user(record.account, urls),
        "app_id": record.app.id,
        "app_slug": record.app.slug,
        "client_id": f"Iv1.{record.app.id:016x}",
        "target_id": record.account.id,
        "target_type": record.account.type if record.account.type != "Bot" else "User",
        "repository_selection": "selected",
        "access_tokens_url": f"{urls.api}/app/installations/{record.id}/access_tokens",
        "repositories_url": f"{urls.api}/installation/repositories",
        "html_url": f"{urls.html}/settings/installations/{record.id}",
        "permissions": dict(APP_PERMISSIONS),
        "events": list(APP_EVENTS),
        "created_at": timestamp(0),
        "updated_at": timestamp(0),
        "single_file_name": None,
        "suspended_at": None,
        "suspended_by": None,
    }


def access_token(value: str, expires_at: float) -> JSON:
    """The body of a created installation access token."""
    return {
        "token": value,
        "expires_at": timestamp(expires_at),
        "permissions": dict(APP_PERMISSIONS),
        "repository_selection": "selected",
    }


def label(name: str, urls: Urls, repo: Repo) -> JSON:
    """A label object (labels exist as soon as they are used, as the REST API allows)."""
    return {
        "id": zlib.crc32(f"{repo.full_name}:{name}".encode()),
        "node_id": node_id("Label", zlib.crc32(name.encode())),
        "url": f"{urls.repo_api(repo)}/labels/{name}",
        "name": name,
        "description": None,
        "color": "ededed",
        "default": False,
    }


def issue(record: Issue, urls: Urls, *, is_pull: bool, comments: int) -> JSON:
    """An issue object; a PR's issue half carries a `pull_request` link."""
    api = f"{urls.repo_api(record.repo)}/issues/{record.number}"
    body: JSON = {
        "id": record.id,
        "node_id": node_id("Issue", record.id),
        "number": record.number,
        "title": record.title,
        "body": record.body,
        "user": user(record.user, urls),
        "state": record.state,
        "locked": False,
        "labels": [label(name, urls, record.repo) for name in record.labels],
        "assignees": [],
        "comments": comments,
        "url": api,
        "repository_url": urls.repo_api(record.repo),
        "comments_url": f"{api}/comments",
        "html_url": f"{urls.repo_html(record.repo)}/issues/{record.number}",
        "author_association": "OWNER" if record.user is record.repo.owner else "CONTRIBUTOR",
        "created_at": timestamp(record.created_at),
        "updated_at": timestamp(record.updated_at),
        "closed_at": None,
    }
    if is_pull:
        pulls_api = f"{urls.repo_api(record.repo)}/pulls/{record.number}"
        html = f"{urls.repo_html(record.repo)}/pull/{record.number}"
        body["pull_request"] = {"url": pulls_api, "html_url": html}
    return body


def reaction_rollup(reactions: list[Reaction], url: str) -> JSON:
    """The `reactions` summary embedded in comments."""
    counts = {key: sum(1 for r in reactions if r.content == key) for key in REACTION_KEYS}
    return {"url": url, "total_count": len(reactions), **counts}


def comment(record: Comment, urls: Urls, reactions: list[Reaction]) -> JSON:
    """An issue comment or a review comment."""
    repo_api = urls.repo_api(record.repo)
    if record.kind == "review":
        api = f"{repo_api}/pulls/comments/{record.id}"
        html = f"{urls.repo_html(record.repo)}/pull/{record.number}#discussion_r{record.id}"
    else:
        api = f"{repo_api}/issues/comments/{record.id}"
        html = f"{urls.repo_html(record.repo)}/issues/{record.number}#issuecomment-{record.id}"
    return {
        "id": record.id,
        "node_id": node_id("IssueComment", record.id),
        "url": api,
        "html_url": html,
        "issue_url": f"{repo_api}/issues/{record.number}",
        "body": record.body,
        "user": user(record.user, urls),
        "created_at": timestamp(record.created_at),
        "updated_at": timestamp(record.updated_at),
        "author_association": "OWNER" if record.user is record.repo.owner else "CONTRIBUTOR",
        "reactions": reaction_rollup(reactions, f"{api}/reactions"),
    }


def reaction(record: Reaction, urls: Urls) -> JSON:
    """A reaction object."""
    return {
        "id": record.id,
        "node_id": node_id("Reaction", record.id),
        "user": user(record.user, urls),
        "content": record.content,
        "created_at": timestamp(record.created_at),
    }


def pull(record: Pull, urls: Urls, head_sha: str, base_sha: str) -> JSON:
    """A pull request object; the head SHA is whatever the branch points at now."""
    repo = record.issue.repo
    body = issue(record.issue, urls, is_pull=False, comments=0)
    api = f"{urls.repo_api(repo)}/pulls/{record.issue.number}"
    body.update(
        {
            "id": record.id,
            "node_id": node_id("PullRequest", record.id),
            "url": api,
            "html_url": f"{urls.repo_html(repo)}/pull/{record.issue.number}",
            "issue_url": f"{urls.repo_api(repo)}/issues/{record.issue.number}",
            "diff_url": f"{urls.repo_html(repo)}/pull/{record.issue.number}.diff",
            "draft": record.draft,
            "merged": False,
            "merged_at": None,
            "mergeable": None,
            "maintainer_can_modify": record.maintainer_can_modify,
            "head": _pull_end(record.head_repo or repo, urls, record.head, head_sha),
            "base": _pull_end(repo, urls, record.base, base_sha),
        }
    )
    return body


def _pull_end(repo: Repo, urls: Urls, ref: str, sha: str) -> JSON:
    return {
        "label": f"{repo.owner.login}:{ref}",
        "ref": ref,
        "sha": sha,
        "user": user(repo.owner, urls),
        "repo": repository(repo, urls),
    }


def check_run(record: CheckRun, urls: Urls) -> JSON:
    """A check run object."""
    api = f"{urls.repo_api(record.repo)}/check-runs/{record.id}"
    output = {
        "title": record.output.get("title"),
        "summary": record.output.get("summary"),
        "text": record.output.get("text"),
        "annotations_count": len(record.annotations),
        "annotations_url": f"{api}/annotations",
    }
    return {
        "id": record.id,
        "node_id": node_id("CheckRun", record.id),
        "name": record.name,
        "head_sha": record.head_sha,
        "external_id": record.external_id,
        "url": api,
        "html_url": f"{urls.repo_html(record.repo)}/runs/{record.id}",
        "details_url": record.details_url,
        "status": record.status,
        "conclusion": record.conclusion,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
        "output": output,
        "check_suite": {"id": record.id},
        "app": app(record.app, urls),
        "pull_requests": [],
    }


def branch_summary(repo: Repo, urls: Urls, name: str, sha: str) -> JSON:
    """An entry of `GET /repos/{o}/{r}/branches`."""
    return {
        "name": name,
        "commit": {"sha": sha, "url": f"{urls.repo_api(repo)}/commits/{sha}"},
        "protected": False,
    }


def branch(repo: Repo, urls: Urls, name: str, info: CommitInfo) -> JSON:
    """`GET /repos/{o}/{r}/branches/{branch}`."""
    api = urls.repo_api(repo)
    commit = {
        "sha": info.sha,
        "node_id": node_id("Commit", int(info.sha[:8], 16)),
        "url": f"{api}/commits/{info.sha}",
        "html_url": f"{urls.repo_html(repo)}/commit/{info.sha}",
        "commit": {
            "author": {
                "name": info.author_name,
                "email": info.author_email,
                "date": git_date(info.author_date),
            },
            "committer": {
                "name": info.committer_name,
                "email": info.committer_email,
                "date": git_date(info.committer_date),
            },
            "message": info.message,
            "tree": {"sha": info.tree, "url": f"{api}/git/trees/{info.tree}"},
        },
        "parents": [{"sha": p, "url": f"{api}/commits/{p}"} for p in info.parents],
    }
    return {
        "name": name,
        "commit": commit,
        "_links": {"self": f"{api}/branches/{name}", "html": f"{urls.repo_html(repo)}/tree/{name}"},
        "protected": False,
        "protection": {"enabled": False, "required_status_checks": {"enforcement_level": "off"}},
        "protection_url": f"{api}/branches/{name}/protection",
    }


def content_entry(repo: Repo, urls: Urls, entry: TreeEntry, ref: str) -> JSON:
    """A contents-API entry (file or dir) without content."""
    api = f"{urls.repo_api(repo)}/contents/{entry.path}?ref={ref}"
    kind = {"blob": "file", "tree": "dir", "commit": "submodule"}.get(entry.type, "file")
    if entry.mode == "120000":
        kind = "symlink"
    html = f"{urls.repo_html(repo)}/blob/{ref}/{entry.path}"
    raw = f"{urls.html}/raw/{repo.full_name}/{ref}/{entry.path}" if kind == "file" else None
    git_url = f"{urls.repo_api(repo)}/git/{'trees' if kind == 'dir' else 'blobs'}/{entry.sha}"
    return {
        "type": kind,
        "name": entry.path.rsplit("/", 1)[-1],
        "path": entry.path,
        "sha": entry.sha,
        "size": entry.size,
        "url": api,
        "html_url": html,
        "git_url": git_url,
        "download_url": raw,
        "_links": {"self": api, "git": git_url, "html": html},
    }


def content_file(repo: Repo, urls: Urls, entry: TreeEntry, ref: str, data: bytes) -> JSON:
    """A file from the contents API, base64 encoded and wrapped like GitHub's."""
    encoded = base64.b64encode(data).decode()
    lines = [encoded[i : i + BASE64_LINE] for i in range(0, len(encoded), BASE64_LINE)]
    body = content_entry(repo, urls, entry, ref)
    body.update({"encoding": "base64", "content": "\n".join(lines) + "\n" if lines else ""})
    return body


def annotation(record: CheckRun, urls: Urls, note: dict[str, object]) -> JSON:
    """A check-run annotation as `GET .../check-runs/{id}/annotations` lists it."""
    path = str(note.get("path", ""))
    return {
        "path": path,
        "blob_href": f"{urls.repo_html(record.repo)}/blob/{record.head_sha}/{path}",
        "start_line": note.get("start_line"),
        "end_line": note.get("end_line"),
        "start_column": note.get("start_column"),
        "end_column": note.get("end_column"),
        "annotation_level": note.get("annotation_level"),
        "title": note.get("title"),
        "message": note.get("message"),
        "raw_details": note.get("raw_details"),
    }


DIFF_STATUS = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied"}


def diff_entry(repo: Repo, urls: Urls, entry: DiffEntry, head_sha: str, patch: str = "") -> JSON:
    """An entry of `GET /repos/{o}/{r}/pulls/{n}/files` (`patch` absent for binary files)."""
    status = DIFF_STATUS.get(entry.status, "changed")
    body: JSON = {
        "sha": entry.old_sha if status == "removed" else entry.new_sha,
        "filename": entry.path,
        "status": status,
        "additions": entry.additions,
        "deletions": entry.deletions,
        "changes": entry.additions + entry.deletions,
        "blob_url": f"{urls.repo_html(repo)}/blob/{head_sha}/{entry.path}",
        "raw_url": f"{urls.repo_html(repo)}/raw/{head_sha}/{entry.path}",
        "contents_url": f"{urls.repo_api(repo)}/contents/{entry.path}?ref={head_sha}",
    }
    if status in ("renamed", "copied"):
        body["previous_filename"] = entry.old_path
    if patch:
        body["patch"] = patch
    return body


def tree(repo: Repo, urls: Urls, sha: str, entries: list[TreeEntry]) -> JSON:
    """`GET /repos/{o}/{r}/git/trees/{sha}`; the stand-in never truncates."""
    api = urls.repo_api(repo)
    items = []
    for entry in entries:
        item: JSON = {"path": entry.path, "mode": entry.mode, "type": entry.type, "sha": entry.sha}
        if entry.type == "blob":
            item.update(size=entry.size, url=f"{api}/git/blobs/{entry.sha}")
        elif entry.type == "tree":
            item["url"] = f"{api}/git/trees/{entry.sha}"
        items.append(item)
    return {"sha": sha, "url": f"{api}/git/trees/{sha}", "truncated": False, "tree": items}
