"""The stand-in's in-memory world: apps, installations, tokens, users, repos, issues, PRs."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from forge.auth import KeyPair, generate_key_pair, new_installation_token

DEFAULT_TOKEN_TTL_SECONDS = 3600.0
PERMISSIONS = ("admin", "maintain", "write", "triage", "read", "none")
# The collaborator-permission endpoint folds roles into GitHub's older permission levels.
LEGACY_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}
APP_PERMISSIONS = {
    "contents": "write",
    "issues": "write",
    "pull_requests": "write",
    "checks": "write",
    "metadata": "read",
}
APP_EVENTS = ("issue_comment", "issues", "pull_request", "pull_request_review_comment")

UserType = Literal["User", "Bot", "Organization"]
# GitHub: all three steps of the manifest flow must complete within one hour.
MANIFEST_CODE_TTL_SECONDS = 3600.0
# Who is signed in to the stand-in's web pages (the manifest flow registers Apps as them).
DEFAULT_WEB_USER = "gantry-dev"


@dataclass
class User:
    """An account: a person, a bot, or an organization owning repos."""

    id: int
    login: str
    type: UserType = "User"


@dataclass
class App:
    """A registered GitHub App, with the key pair whose public half verifies its JWTs."""

    id: int
    slug: str
    name: str
    owner: User
    keys: KeyPair
    bot: User
    # What a manifest asked for; None: the stand-in's defaults (APP_PERMISSIONS, APP_EVENTS).
    permissions: dict[str, str] | None = None
    events: tuple[str, ...] | None = None
    description: str = ""
    hook_url: str | None = None
    webhook_secret: str | None = None
    client_secret: str = ""


@dataclass
class Installation:
    """An App installed on an account, for some of its repositories."""

    id: int
    app: App
    account: User
    repos: set[str]


@dataclass
class Token:
    """An installation access token with its expiry."""

    value: str
    installation: Installation
    expires_at: float


@dataclass
class Repo:
    """A repository whose git data lives in a bare repo on disk."""

    id: int
    owner: User
    name: str
    path: Path
    default_branch: str = "main"
    permissions: dict[str, str] = field(default_factory=dict)
    # The repository this one is a fork of (only a pull request's head repository is one).
    parent: Repo | None = None

    @property
    def full_name(self) -> str:
        """`owner/name`."""
        return f"{self.owner.login}/{self.name}"


@dataclass
class Issue:
    """An issue, or the issue half of a pull request (they share numbers)."""

    id: int
    repo: Repo
    number: int
    title: str
    body: str | None
    user: User
    created_at: float
    state: str = "open"
    updated_at: float = 0.0
    labels: list[str] = field(default_factory=list)


@dataclass
class Pull:
    """A pull request; its head SHA is read from the bare repo whenever it is shown."""

    issue: Issue
    id: int
    head: str
    base: str
    draft: bool = False
    maintainer_can_modify: bool = False
    # Where the head branch lives when it is not the base repository: a fork.
    head_repo: Repo | None = None


@dataclass
class Comment:
    """An issue comment or a pull request review comment."""

    id: int
    repo: Repo
    number: int
    body: str
    user: User
    created_at: float
    updated_at: float
    kind: Literal["issue", "review"] = "issue"


@dataclass
class Review:
    """A submitted pull request review (its inline comments are review comments)."""

    id: int
    repo: Repo
    number: int
    user: User
    body: str
    state: str
    commit_id: str
    submitted_at: float


@dataclass
class Reaction:
    """A reaction on a comment or an issue (`comment_id` holds either's id)."""

    id: int
    comment_id: int
    content: str
    user: User
    created_at: float


@dataclass
class CheckRun:
    """A check run created by an App on a commit."""

    id: int
    repo: Repo
    app: App
    name: str
    head_sha: str
    status: str = "queued"
    conclusion: str | None = None
    details_url: str | None = None
    external_id: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    output: dict[str, object] = field(default_factory=dict)
    # Every request's `output.annotations` is appended here, as GitHub does.
    annotations: list[dict[str, object]] = field(default_factory=list)


@dataclass(frozen=True)
class PendingManifest:
    """A manifest posted to the new-App page, waiting for its "Create GitHub App" press."""

    manifest: dict[str, Any]
    owner: str
    state: str | None
    expires_at: float


@dataclass(frozen=True)
class ManifestCode:
    """The one-time code GitHub's redirect carries, exchanged for the App's credentials."""

    app: App
    expires_at: float


@dataclass
class AfterCreate:
    """What the stand-in does once it has opened a PR: wait, then answer `status` instead of
    201 (the PR exists all the same), for the next `count` PRs. An answer lost in transit."""

    delay: float = 0.0
    status: int | None = None
    count: int = 1


class Clock:
    """Wall-clock time plus an offset tests can move forward."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self.offset = 0.0

    def __call__(self) -> float:
        """Current time in seconds since the epoch, as the stand-in sees it."""
        return self._now() + self.offset


class State:
    """All records, with GitHub-like id allocation and lookups."""

    def __init__(self, clock: Clock, token_ttl: float = DEFAULT_TOKEN_TTL_SECONDS) -> None:
        self.clock = clock
        self.token_ttl = token_ttl
        self._ids: Iterator[int] = itertools.count(1001)
        self.users: dict[str, User] = {}
        self.apps: dict[int, App] = {}
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, Token] = {}
        self.repos: dict[str, Repo] = {}
        self.issues: dict[tuple[str, int], Issue] = {}
        self.pulls: dict[tuple[str, int], Pull] = {}
        self.comments: dict[int, Comment] = {}
        self.reactions: list[Reaction] = []
        self.check_runs: dict[int, CheckRun] = {}
        self.reviews: dict[int, Review] = {}
        self.after_create_pull: list[AfterCreate] = []
        self.web_user = DEFAULT_WEB_USER
        self.pending_manifests: dict[str, PendingManifest] = {}
        self.manifest_codes: dict[str, ManifestCode] = {}

    def next_id(self) -> int:
        """A fresh id, unique across all record kinds (GitHub ids are global too)."""
        return next(self._ids)

    def user(self, login: str, kind: UserType = "User") -> User:
        """Get or create an account; an explicit kind updates an existing one."""
        found = self.users.get(login.lower())
        if found is None:
            found = User(self.next_id(), login, kind)
            self.users[login.lower()] = found
        elif kind != "User":
            found.type = kind
        return found

    def add_app(self, slug: str, owner: str, name: str | None = None) -> App:
        """Register an App with a fresh RSA key and its `slug[bot]` user."""
        bot = self.user(f"{slug}[bot]", "Bot")
        app = App(self.next_id(), slug, name or slug, self.user(owner), generate_key_pair(), bot)
        self.apps[app.id] = app
        return app

    def app_named(self, name: str) -> App | None:
        """The App with this name or slug (GitHub keeps both unique), if any."""
        wanted = name.lower()
        for app in self.apps.values():
            if wanted in (app.name.lower(), app.slug.lower()):
                return app
        return None

    def install(self, app: App, account: str, repos: set[str]) -> Installation:
        """Install `app` on `account` for the given repo names."""
        installation = Installation(self.next_id(), app, self.user(account), set(repos))
        self.installations[installation.id] = installation
        return installation

    def installation_for(self, repo: Repo, app: App) -> Installation | None:
        """The installation of `app` that covers `repo`, if any."""
        for installation in self.installations.values():
            if (
                installation.app is app
                and installation.account is repo.owner
                and repo.name in installation.repos
            ):
                return installation
        return None

    def mint_token(self, installation: Installation) -> Token:
        """Issue an installation token valid for `token_ttl` seconds."""
        token = Token(new_installation_token(), installation, self.clock() + self.token_ttl)
        self.tokens[token.value] = token
        return token

    def valid_token(self, value: str) -> Token | None:
        """The token record if it exists and has not expired."""
        token = self.tokens.get(value)
        if token is None or token.expires_at <= self.clock():
            return None
        return token

    def expire_tokens(self) -> None:
        """Make every token issued so far expired."""
        for token in self.tokens.values():
            token.expires_at = min(token.expires_at, self.clock() - 1)

    def repo(self, owner: str, name: str) -> Repo | None:
        """Look a repo up by owner and name, case-insensitively like GitHub."""
        return self.repos.get(f"{owner}/{name}".lower())

    def add_repo(self, owner: str, name: str, path: Path, default_branch: str) -> Repo:
        """Record a repository whose bare git dir is at `path`; its owner is admin."""
        account = self.user(owner)
        repo = Repo(self.next_id(), account, name, path, default_branch)
        repo.permissions[account.login.lower()] = "admin"
        self.repos[repo.full_name.lower()] = repo
        return repo

    def fork_of(self, repo: Repo, full_name: str) -> Repo:
        """A fork `owner/name` of `repo`, as a pull request's head repository.

        It shares the base's git data (GitHub keeps a fork's pull request commits in the base
        too, under `refs/pull/N/head`) and is not listed among the repositories."""
        owner, _, name = full_name.partition("/")
        account = self.user(owner)
        return Repo(self.next_id(), account, name, repo.path, repo.default_branch, parent=repo)

    def next_number(self, repo: Repo) -> int:
        """Issues and PRs share one number sequence per repository."""
        numbers = [n for (key, n) in self.issues if key == repo.full_name.lower()]
        return max(numbers, default=0) + 1

    def add_issue(self, repo: Repo, title: str, body: str | None, user: User) -> Issue:
        """Open an issue."""
        now = self.clock()
        issue = Issue(self.next_id(), repo, self.next_number(repo), title, body, user, now)
        issue.updated_at = now
        self.issues[(repo.full_name.lower(), issue.number)] = issue
        return issue

    def issue(self, repo: Repo, number: int) -> Issue | None:
        """An issue (or a PR's issue half) by number."""
        return self.issues.get((repo.full_name.lower(), number))

    def pull(self, repo: Repo, number: int) -> Pull | None:
        """A pull request by number."""
        return self.pulls.get((repo.full_name.lower(), number))

    def add_pull(self, repo: Repo, fields: PullFields, user: User) -> Pull:
        """Open a pull request (an issue with head and base)."""
        issue = self.add_issue(repo, fields.title, fields.body, user)
        pull = Pull(issue, self.next_id(), fields.head, fields.base, fields.draft)
        pull.maintainer_can_modify = fields.maintainer_can_modify
        self.pulls[(repo.full_name.lower(), issue.number)] = pull
        return pull

    def take_after_create_pull(self) -> AfterCreate | None:
        """The rule for the PR just opened, if one is set; its count goes down."""
        for rule in self.after_create_pull:
            if rule.count > 0:
                rule.count -= 1
                return rule
        return None

    def add_comment(
        self,
        repo: Repo,
        number: int,
        body: str,
        user: User,
        kind: Literal["issue", "review"] = "issue",
    ) -> Comment:
        """Add a comment to an issue/PR conversation, or a review comment to a PR."""
        now = self.clock()
        comment = Comment(self.next_id(), repo, number, body, user, now, now, kind)
        self.comments[comment.id] = comment
        return comment

    def add_reaction(self, target_id: int, content: str, user: User) -> tuple[Reaction, bool]:
        """React to a comment or issue (ids are unique across both) once per user and content,
        like GitHub; say whether it was new."""
        for reaction in self.reactions:
            same = reaction.comment_id == target_id and reaction.user is user
            if same and reaction.content == content:
                return reaction, False
        reaction = Reaction(self.next_id(), target_id, content, user, self.clock())
        self.reactions.append(reaction)
        return reaction, True

    def permission(self, repo: Repo, login: str) -> str:
        """A user's role on a repo (admin/maintain/write/triage/read/none)."""
        return repo.permissions.get(login.lower(), "none")


@dataclass(frozen=True)
class PullFields:
    """What a create-PR request gives."""

    title: str
    head: str
    base: str
    body: str | None = None
    draft: bool = False
    maintainer_can_modify: bool = False
