"""`Forge`: the stand-in's aiohttp app plus the helpers tests use to set up and inspect it."""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from forge import git_repo, render
from forge.context import API_PREFIX, CONTEXT_KEY, Context, RequestRecord, Violation
from forge.data import GitHubDataPaths, ensure_github_data
from forge.faults import Fault, FaultKind, compile_route
from forge.git_http import handle_git
from forge.hook_log import HookLog
from forge.manifest_flow import api_routes as manifest_api_routes
from forge.manifest_flow import web_routes as manifest_web_routes
from forge.openapi import load_spec
from forge.render import Urls
from forge.rest import MIDDLEWARES
from forge.rest_apps import routes as app_routes
from forge.rest_code import routes as code_routes
from forge.rest_issues import routes as issue_routes
from forge.rest_pulls import routes as pull_routes
from forge.rest_reviews import routes as review_routes
from forge.sender import (
    Rewrite,
    build_delivery,
    load_examples,
    pick_example,
    post_delivery,
    rewrite,
)
from forge.state import (
    DEFAULT_TOKEN_TTL_SECONDS,
    PERMISSIONS,
    Clock,
    Issue,
    Pull,
    PullFields,
    Repo,
    State,
    UserType,
)

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
GIT_ROUTE = "/{owner}/{repo}.git/{tail:.*}"


@dataclass(frozen=True)
class AppCredentials:
    """What an operator copies from a GitHub App's settings page."""

    app_id: int
    slug: str
    private_key_pem: str


def create_app(ctx: Context) -> web.Application:
    """The aiohttp app: REST under `/api/v3`, git smart HTTP at `/{owner}/{repo}.git`."""
    api = web.Application()
    routes = (app_routes, code_routes, issue_routes, pull_routes, review_routes)
    for table in (*routes, manifest_api_routes):
        api.add_routes(table)
    root = web.Application(middlewares=MIDDLEWARES, client_max_size=1024**3)
    root[CONTEXT_KEY] = ctx
    root.add_subapp(API_PREFIX, api)
    root.add_routes(manifest_web_routes)
    root.router.add_route("*", GIT_ROUTE, handle_git)
    return root


class Forge:
    """A running GitHub stand-in and the helpers to arrange and inspect its world."""

    def __init__(
        self,
        data_dir: Path,
        *,
        github_data: GitHubDataPaths | None = None,
        token_ttl: float = DEFAULT_TOKEN_TTL_SECONDS,
    ) -> None:
        self.data_dir = data_dir
        self.github_data = github_data or ensure_github_data()
        self.clock = Clock()
        self.state = State(self.clock, token_ttl)
        self.context = Context(self.state, load_spec(self.github_data.openapi), data_dir / "repos")
        self.app = create_app(self.context)
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on host:port (0 picks a free port)."""
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        sock = socket.create_server((host, port))
        await web.SockSite(self._runner, sock).start()
        base = f"http://{host}:{sock.getsockname()[1]}"
        self.context.urls = Urls(html=base, api=base + API_PREFIX)

    async def close(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """Web root; git lives at `{base_url}/{owner}/{repo}.git`."""
        return self.context.urls.html

    @property
    def api_url(self) -> str:
        """REST root (`GITHUB_API_URL` for a client), like GitHub Enterprise's `/api/v3`."""
        return self.context.urls.api

    def git_url(self, owner: str, repo: str, token: str | None = None) -> str:
        """The clone URL, with `x-access-token:<token>@` credentials when given."""
        if token is None:
            return f"{self.base_url}/{owner}/{repo}.git"
        scheme, rest = self.base_url.split("://", 1)
        return f"{scheme}://x-access-token:{token}@{rest}/{owner}/{repo}.git"

    # Contract and request logs.

    @property
    def violations(self) -> list[Violation]:
        """Requests GitHub's OpenAPI description would not accept, in order."""
        return self.context.violations

    def take_violations(self) -> list[Violation]:
        """Return the recorded violations and clear them (so teardown does not fail)."""
        taken = list(self.context.violations)
        self.context.violations.clear()
        return taken

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received (method, route path, status; 0 for a reset)."""
        return self.context.requests

    # Apps, installations and tokens.

    def register_app(self, slug: str = "gantry", owner: str = "gantry-dev") -> AppCredentials:
        """Register an App with a fresh RSA key; its bot user is `{slug}[bot]`."""
        app = self.state.add_app(slug, owner)
        return AppCredentials(app.id, app.slug, app.keys.private_pem)

    def sign_in(self, login: str) -> None:
        """Act as `login` on the web pages (the manifest flow registers Apps for them)."""
        self.state.user(login)
        self.state.web_user = login

    def install(self, app_id: int, owner: str, repos: list[str]) -> int:
        """Install an App on `owner` for some repos; return the installation id."""
        return self.state.install(self.state.apps[app_id], owner, set(repos)).id

    def mint_token(self, installation_id: int) -> str:
        """An installation token, without going through the JWT exchange."""
        return self.state.mint_token(self.state.installations[installation_id]).value

    def set_token_ttl(self, seconds: float) -> None:
        """Lifetime of tokens minted from now on."""
        self.state.token_ttl = seconds

    def expire_tokens(self) -> None:
        """Expire every token minted so far."""
        self.state.expire_tokens()

    def advance_clock(self, seconds: float) -> None:
        """Move the stand-in's clock (token expiry and JWT checks) forward."""
        self.clock.offset += seconds

    # Repositories, users and conversations.

    async def create_repo(
        self, owner: str, name: str, source: Path | None = None, default_branch: str = "main"
    ) -> Repo:
        """A bare repo whose `default_branch` holds `source`'s files in one fixed commit."""
        if not (NAME_RE.match(owner) and NAME_RE.match(name)):
            raise ValueError(f"bad repository name {owner}/{name}")
        path = self.context.repos_dir / owner / f"{name}.git"
        await git_repo.init_bare(path, source, default_branch)
        return self.state.add_repo(owner, name, path, default_branch)

    def repo(self, owner: str, name: str) -> Repo:
        """A repository record (KeyError when unknown)."""
        found = self.state.repo(owner, name)
        if found is None:
            raise KeyError(f"{owner}/{name}")
        return found

    def add_user(self, login: str, kind: UserType = "User") -> None:
        """Make an account known (a `Bot` never triggers Gantry)."""
        self.state.user(login, kind)

    def set_permission(
        self, owner: str, repo: str, login: str, permission: str, kind: UserType = "User"
    ) -> None:
        """Give `login` a role on a repo: admin/maintain/write/triage/read/none."""
        if permission not in PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}; one of {PERMISSIONS}")
        account = self.state.user(login, kind)
        self.repo(owner, repo).permissions[account.login.lower()] = permission

    def create_issue(
        self, owner: str, repo: str, title: str, body: str = "", user: str = ""
    ) -> Issue:
        """Open an issue as `user` (default: the owner)."""
        record = self.repo(owner, repo)
        author = self.state.user(user or owner)
        return self.state.add_issue(record, title, body, author)

    def add_comment(
        self, owner: str, repo: str, number: int, body: str, user: str, *, review: bool = False
    ) -> int:
        """A human's comment (issue comment, or PR review comment); return its id."""
        record = self.repo(owner, repo)
        author = self.state.user(user)
        return self.state.add_comment(
            record, number, body, author, "review" if review else "issue"
        ).id

    def comments(self, owner: str, repo: str, number: int) -> list[dict[str, Any]]:
        """Issue comments on an issue/PR, oldest first: id, body, user login."""
        record = self.repo(owner, repo)
        return [
            {"id": c.id, "body": c.body, "user": c.user.login}
            for c in self.state.comments.values()
            if c.repo is record and c.number == number and c.kind == "issue"
        ]

    def reactions(self, comment_id: int) -> list[tuple[str, str]]:
        """(content, user login) of every reaction on a comment (or an issue, by its id)."""
        return [
            (r.content, r.user.login) for r in self.state.reactions if r.comment_id == comment_id
        ]

    def pulls(self, owner: str, repo: str) -> list[Pull]:
        """Pull requests of a repo, by number."""
        record = self.repo(owner, repo)
        found = [p for p in self.state.pulls.values() if p.issue.repo is record]
        return sorted(found, key=lambda p: p.issue.number)

    def check_runs(self, owner: str, repo: str) -> list[dict[str, Any]]:
        """Check runs of a repo: id, name, head_sha, status, conclusion, output."""
        record = self.repo(owner, repo)
        return [
            {
                "id": r.id,
                "name": r.name,
                "head_sha": r.head_sha,
                "status": r.status,
                "conclusion": r.conclusion,
                "output": r.output,
                "annotations": list(r.annotations),
            }
            for r in self.state.check_runs.values()
            if r.repo is record
        ]

    async def commit_files(
        self,
        owner: str,
        repo: str,
        branch: str,
        files: Mapping[str, str | bytes | None],
        *,
        message: str = "Change files",
        base: str | None = None,
    ) -> str:
        """Commit `files` (path → text or bytes; None deletes) on `branch`; return the SHA.

        A new branch starts from `base` (default: the default branch); an existing one
        gets the commit on top of its head, like a push.
        """
        record = self.repo(owner, repo)
        heads = await git_repo.branch_heads(record.path)
        parent = heads.get(branch) or heads[base or record.default_branch]
        data = {p: t.encode() if isinstance(t, str) else t for p, t in files.items()}
        return await git_repo.commit_files(record.path, parent, branch, data, message)

    def open_pull(
        self,
        owner: str,
        repo: str,
        head: str,
        *,
        base: str | None = None,
        title: str = "",
        user: str = "",
        head_repo: str | None = None,
    ) -> Pull:
        """Open a PR from a pushed branch as `user` (default: the owner), without the API.

        `head_repo` (`owner/name`) makes it a fork's pull request: its head is shown as that
        repository's branch (the branch itself is read from this repository)."""
        record = self.repo(owner, repo)
        fields = PullFields(title or head, head, base or record.default_branch)
        pull = self.state.add_pull(record, fields, self.state.user(user or owner))
        if head_repo is not None:
            pull.head_repo = self.state.fork_of(record, head_repo)
        return pull

    async def branches(self, owner: str, repo: str) -> dict[str, str]:
        """Branch name → head SHA, straight from the bare repo."""
        return await git_repo.branch_heads(self.repo(owner, repo).path)

    # Faults.

    def inject_fault(
        self,
        method: str,
        route: str,
        kind: FaultKind,
        *,
        count: int | None = 1,
        delay: float = 0.0,
        status: int = 502,
        retry_after: int = 1,
    ) -> Fault:
        """Make the next `count` matching requests fail (None: all of them).

        `route` is a REST path without `/api/v3` (or a git path), with `{name}` for one
        segment and `*` for anything, e.g. `/repos/{owner}/{repo}/pulls`.
        """
        fault = Fault(method.upper(), compile_route(route), kind, count, delay, status, retry_after)
        return self.context.faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.context.faults.clear()

    # Webhooks.

    async def send_webhook(
        self,
        url: str,
        secret: str,
        event: str,
        action: str | None,
        *,
        owner: str,
        repo: str,
        installation_id: int,
        sender: str,
        body: str | None = None,
        number: int | None = None,
        index: int = 0,
        comment_id: int | None = None,
    ) -> int:
        """Deliver a real example payload, rewritten to point here, signed; return the status.

        When `number` names an issue or PR of the stand-in, the payload's `issue` and
        `pull_request` objects are replaced by the stand-in's own (current head SHA included);
        `comment_id` points the payload's comment at one the stand-in holds.
        """
        payload = pick_example(load_examples(self.github_data.webhooks), event, action, index=index)
        record = self.state.repo(owner, repo)
        if record is not None and number is not None:
            await self._merge_records(payload, record, number)
        spec = Rewrite(
            owner=owner,
            repo=repo,
            html_url=self.base_url,
            api_url=self.api_url,
            installation_id=installation_id,
            sender=sender,
            repo_id=record.id if record is not None else None,
            default_branch=record.default_branch if record is not None else None,
            body=body,
            number=number,
        )
        rewritten = rewrite(payload, spec)
        if comment_id is not None and isinstance(rewritten.get("comment"), dict):
            rewritten["comment"]["id"] = comment_id
        delivery = build_delivery(event, rewritten, secret)
        installation = self.state.installations.get(installation_id)
        if installation is None:
            return await post_delivery(url, delivery)
        log = self.context.hook_log(installation.app.id)
        sent = await log.send(url, delivery, redelivery=False, when=self.state.clock())
        return sent.status_code

    def hook_log(self, app_id: int) -> HookLog:
        """What the sender delivered for one App, redeliveries included."""
        return self.context.hook_log(app_id)

    async def _merge_records(self, payload: dict[str, Any], repo: Repo, number: int) -> None:
        """Overlay the stand-in's issue/PR on the example's, keeping fields it does not model."""
        urls = self.context.urls
        issue = self.state.issue(repo, number)
        pull = self.state.pull(repo, number)
        if issue is not None and "issue" in payload:
            rendered = render.issue(issue, urls, is_pull=pull is not None, comments=0)
            payload["issue"] = {**payload["issue"], **rendered}
            if pull is None:
                payload["issue"].pop("pull_request", None)
        if pull is not None and "pull_request" in payload:
            heads = await git_repo.branch_heads(repo.path)
            rendered = render.pull(pull, urls, heads.get(pull.head, ""), heads.get(pull.base, ""))
            payload["pull_request"] = {**payload["pull_request"], **rendered}
        payload["repository"] = {**payload.get("repository", {}), **render.repository(repo, urls)}
