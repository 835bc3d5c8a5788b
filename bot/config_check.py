"""The "Gantry config" check run on pull requests that change gantry.yml or an AGENTS.md.

Pure: which files matter, and the check run's payloads from the validation results.
Thin shell: list the PR's files, read the head's copies, create (and extend) the check run.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot import repo_files
from bot.intake import Outcome
from bot.routing import Dispatch
from config.agents_md import AGENTS_FILE, AgentsDoc, Command
from config.org_defaults import org_repo
from config.repo_config import CONFIG_PATH, ConfigError, ParsedConfig
from config.settings import Settings

router = routing.Router()

CHECK_NAME = "Gantry config"
PULL_FILES_URL = "/repos/{+repo}/pulls/{number}/files?per_page=100"
CHECK_RUNS_URL = "/repos/{+repo}/check-runs"
CHECK_RUN_URL = "/repos/{+repo}/check-runs/{id}"
# https://docs.github.com/rest/checks/runs#update-a-check-run: at most 50 per request.
ANNOTATIONS_PER_REQUEST = 50
MAX_FILES_CHECKED = 100
# AGENTS.md text one check parses at most (a hostile one takes seconds per 100 KB): files
# past it are listed as not checked.
MAX_AGENTS_BYTES_CHECKED = 1024 * 1024
MAX_OUTPUT_CHARS = 65_535
NOT_CHECKED = (
    f"Not checked (a check reads at most {MAX_FILES_CHECKED} files and "
    f"{MAX_AGENTS_BYTES_CHECKED // 1024} KiB of AGENTS.md)"
)
TRUNCATED_NOTE = "\n\n… (cut: GitHub shows at most 65,535 characters)"
DEFAULT_BRANCH_NOTE = (
    "Tasks always run with the default branch's copies; this pull request's take effect "
    "once it is merged."
)
ORG_NOTE = (
    "This is the `.github` repository of **{owner}**: its `.github/gantry.yml` gives the "
    "defaults of every repository there, each repository's own file overriding it key by key."
)
Level = Literal["notice", "warning", "failure"]
Conclusion = Literal["success", "failure"]


def is_config_file(path: str) -> bool:
    """gantry.yml, or an AGENTS.md in any directory."""
    return path == CONFIG_PATH or posixpath.basename(path) == AGENTS_FILE


@dataclass(frozen=True)
class ConfigChanges:
    """The config files a PR touches: those its head has (to check) and those it removes."""

    present: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def touched(self) -> bool:
        return bool(self.present or self.removed)


def config_changes(pull_files: Iterable[Mapping[str, Any]]) -> ConfigChanges:
    """From `GET /pulls/{n}/files` entries; a rename away from a config file removes it."""
    present: list[str] = []
    removed: list[str] = []
    for entry in pull_files:
        name, previous = str(entry["filename"]), entry.get("previous_filename")
        if entry.get("status") == "removed":
            removed += [name] if is_config_file(name) else []
            continue
        present += [name] if is_config_file(name) else []
        if previous and is_config_file(str(previous)) and previous != name:
            removed.append(str(previous))
    return ConfigChanges(tuple(sorted(present)), tuple(sorted(removed)))


@dataclass(frozen=True)
class Annotation:
    """One line of feedback on a file, as the Checks API takes it."""

    path: str
    line: int
    level: Level
    message: str
    title: str

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "start_line": self.line,
            "end_line": self.line,
            "annotation_level": self.level,
            "message": self.message,
            "title": self.title[:255],
        }


@dataclass(frozen=True)
class Validation:
    """What the head's copies say: the config (or its error) and the AGENTS.md files."""

    config: ParsedConfig | ConfigError | None = None
    docs: tuple[AgentsDoc, ...] = ()
    removed: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    # Set when the repository is an organisation's `.github`: its file is everyone's default.
    defaults_for: str | None = None


@dataclass(frozen=True)
class CheckReport:
    """The check run's verdict, text and annotations."""

    conclusion: Conclusion
    title: str
    summary: str
    annotations: tuple[Annotation, ...]


def config_annotations(error: ConfigError) -> list[Annotation]:
    """Each problem of this repository's config file as a failure on its line (the
    organisation's file is in another repository: its problems are in the summary)."""
    if error.source != CONFIG_PATH:
        return []
    return [
        Annotation(error.source, p.line, "failure", str(p), p.path or "gantry.yml")
        for p in error.problems
    ]


def capped_annotations(config: ParsedConfig) -> list[Annotation]:
    """Each value this file asks for above the operator's ceilings, as a warning on its line."""
    provenance = config.provenance
    if provenance is None:
        return []
    return [
        Annotation(CONFIG_PATH, v.line, "warning", f"{v.path}: {v.note}", "capped by the operator")
        for v in provenance.capped
        if v.source == CONFIG_PATH and v.line is not None
    ]


def provenance_summary(config: ParsedConfig | ConfigError | None) -> list[str]:
    """What the operator capped, and where every effective value came from."""
    if not isinstance(config, ParsedConfig) or config.provenance is None:
        return []
    provenance = config.provenance
    lines = []
    if provenance.capped:
        lines.append("Capped by the operator's ceilings:")
        lines += [f"- `{v.path}` = `{v.value}`: {v.describe()}" for v in provenance.capped]
        lines.append("")
    rows = "\n".join(provenance.lines())
    summary = "Where each effective value comes from"
    return [*lines, f"<details><summary>{summary}</summary>", "", fenced(rows), "</details>", ""]


def fenced(text: str) -> str:
    return f"```text\n{text}\n```"


def agents_annotations(doc: AgentsDoc) -> list[Annotation]:
    """Shell blocks Gantry ignores, as warnings: often a heading that says neither."""
    notes = []
    for block in doc.ignored:
        under = f'under "{block.heading}"' if block.heading else "before any heading"
        message = (
            f"This shell block {under} is neither setup nor checks, so Gantry ignores it. "
            "Put it under a heading about setup/installation or tests/checks/lint to use it."
        )
        notes.append(Annotation(doc.path, block.origin.line, "warning", message, "ignored block"))
    return notes


def command_lines(title: str, commands: Sequence[Command]) -> list[str]:
    if not commands:
        return []
    return [f"{title}:"] + [f"- `{c.origin}`: `{c.text.splitlines()[0]}`" for c in commands]


def config_summary(config: ParsedConfig | ConfigError | None) -> list[str]:
    if config is None:
        return []
    if isinstance(config, ConfigError):
        head = f"**`{config.source}`** has {len(config.problems)} problem(s):"
        return [head] + [f"- {line}" for line in config.lines()] + [""]
    overrides = [key for key in ("setup", "checks") if config.line_of(key) is not None]
    note = f" (its `{'` and `'.join(overrides)}` win over AGENTS.md)" if overrides else ""
    return [f"**`{config.source}`** is valid{note}.", ""]


def doc_summary(doc: AgentsDoc) -> list[str]:
    counts = f"{len(doc.setup)} setup and {len(doc.checks)} check command(s)"
    ignored = f", {len(doc.ignored)} ignored shell block(s)" if doc.ignored else ""
    lines = [f"**`{doc.path}`**: {counts}{ignored}."]
    lines += command_lines("Setup", doc.setup) + command_lines("Checks", doc.checks)
    skipped = [i for i in doc.items if not i.taken]
    if skipped:
        lines.append("List items not taken as commands:")
        lines += [f"- `{i.origin}`: `{i.judged.command}`: {i.judged.reason}" for i in skipped]
    return [*lines, ""]


def report_title(errors: int, warnings: int) -> str:
    if errors:
        return f"{errors} error(s) in the Gantry config"
    if warnings:
        return f"Gantry config is valid, with {warnings} warning(s)"
    return "Gantry config is valid"


def not_checked(paths: Sequence[str], shown: int = 20) -> str:
    """The line naming the files a check left out (the first `shown` of them)."""
    names = ", ".join(f"`{path}`" for path in paths[:shown])
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return f"{NOT_CHECKED}: {names}{more}."


def build_report(validation: Validation) -> CheckReport:
    """The check run for a PR's config files: failure when gantry.yml has any problem."""
    annotations: list[Annotation] = []
    foreign_errors = 0
    if isinstance(validation.config, ConfigError):
        annotations += config_annotations(validation.config)
        foreign_errors = 0 if annotations else len(validation.config.problems)
    elif validation.config is not None:
        annotations += capped_annotations(validation.config)
    for doc in validation.docs:
        annotations += agents_annotations(doc)
    lines = config_summary(validation.config)
    if validation.defaults_for:
        lines += [ORG_NOTE.format(owner=validation.defaults_for), ""]
    lines += provenance_summary(validation.config)
    for doc in validation.docs:
        lines += doc_summary(doc)
    lines += [f"`{path}` is removed by this pull request." for path in validation.removed]
    if validation.skipped:
        lines.append(not_checked(validation.skipped))
    lines += ["", DEFAULT_BRANCH_NOTE]
    failures = sum(1 for a in annotations if a.level == "failure")
    errors = failures + foreign_errors
    return CheckReport(
        conclusion="failure" if errors else "success",
        title=report_title(errors, len(annotations) - failures),
        summary=clip("\n".join(lines).strip()),
        annotations=tuple(annotations),
    )


def clip(text: str) -> str:
    """Fit GitHub's output size limit."""
    if len(text) <= MAX_OUTPUT_CHARS:
        return text
    return text[: MAX_OUTPUT_CHARS - len(TRUNCATED_NOTE)] + TRUNCATED_NOTE


def check_run_requests(
    report: CheckReport, head_sha: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The create body and the updates that add the annotations past the first 50.

    With more than 50 the run stays `in_progress` until the last batch is in, so nobody
    sees a finished run with half its annotations.
    """
    notes = [a.to_json() for a in report.annotations]
    batches = [
        notes[i : i + ANNOTATIONS_PER_REQUEST]
        for i in range(0, len(notes), ANNOTATIONS_PER_REQUEST)
    ] or [[]]
    outputs = [
        {"title": report.title, "summary": report.summary, "annotations": b} for b in batches
    ]
    done = {"status": "completed", "conclusion": report.conclusion}
    create: dict[str, Any] = {"name": CHECK_NAME, "head_sha": head_sha, "output": outputs[0]}
    create.update(done if len(outputs) == 1 else {"status": "in_progress"})
    updates: list[dict[str, Any]] = [{"output": output} for output in outputs[1:]]
    if updates:
        updates[-1].update(done)
    return create, updates


# ---- the shell -------------------------------------------------------------------------


@dataclass(frozen=True)
class PullHead:
    """Which pull request, at which head, in which installation."""

    repo: str
    number: int
    head_sha: str
    installation_id: int

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> PullHead:
        pull = data["pull_request"]
        return cls(
            repo=str(data["repository"]["full_name"]),
            number=int(pull["number"]),
            head_sha=str(pull["head"]["sha"]),
            installation_id=int(data["installation"]["id"]),
        )


async def list_changes(gh: GitHubAPI, pull: PullHead) -> ConfigChanges:
    """The config files among the PR's changed files (GitHub lists up to 3,000)."""
    url_vars = {"repo": pull.repo, "number": str(pull.number)}
    return config_changes([entry async for entry in gh.getiter(PULL_FILES_URL, url_vars)])


async def validate_head(
    gh: GitHubAPI, pull: PullHead, changes: ConfigChanges, settings: Settings | None = None
) -> Validation:
    """Read and validate the head's copies of the changed config files (over the
    organisation's defaults, within the operator's ceilings)."""
    checked, skipped = (
        changes.present[:MAX_FILES_CHECKED],
        list(changes.present[MAX_FILES_CHECKED:]),
    )
    config: ParsedConfig | ConfigError | None = None
    docs: list[AgentsDoc] = []
    budget = MAX_AGENTS_BYTES_CHECKED
    for path in checked:
        if path == CONFIG_PATH:
            config = await repo_files.fetch_parsed_config(gh, pull.repo, pull.head_sha, settings)
            continue
        text = await repo_files.fetch_agents_text(gh, pull.repo, path, pull.head_sha)
        if text is None:
            continue
        budget -= len(text.encode())
        if budget < 0:
            skipped.append(path)
            continue
        docs.append(await repo_files.parse_agents(text, path))
    owner = pull.repo.partition("/")[0]
    defaults_for = owner if org_repo(pull.repo) is None and config is not None else None
    return Validation(config, tuple(docs), changes.removed, tuple(skipped), defaults_for)


async def publish(gh: GitHubAPI, pull: PullHead, report: CheckReport) -> int:
    """Create the check run, then add the remaining annotations; return its id."""
    create, updates = check_run_requests(report, pull.head_sha)
    run = await gh.post(CHECK_RUNS_URL, {"repo": pull.repo}, data=create)
    for update in updates:
        await gh.patch(CHECK_RUN_URL, {"repo": pull.repo, "id": run["id"]}, data=update)
    return int(run["id"])


async def check_pull(
    gh: GitHubAPI, pull: PullHead, settings: Settings | None = None
) -> CheckReport | None:
    """The whole check: nothing at all when the PR touches no config file."""
    changes = await list_changes(gh, pull)
    if not changes.touched:
        return None
    report = build_report(await validate_head(gh, pull, changes, settings))
    await publish(gh, pull, report)
    return report


async def _run_check(gh: GitHubAPI, pull: PullHead, settings: Settings | None) -> None:
    await check_pull(gh, pull, settings)


@router.register("pull_request", action="opened")
@router.register("pull_request", action="reopened")
@router.register("pull_request", action="synchronize")
async def pull_request_changed(event: sansio.Event, ctx: Dispatch, **_: Any) -> None:
    """Check the config files of a new or updated PR, after GitHub has its answer."""
    pull = PullHead.from_event(event.data)
    gh = ctx.intake.github(pull.installation_id)
    what = f"config check of {pull.repo}#{pull.number}"
    ctx.intake.background.spawn(_run_check(gh, pull, ctx.intake.settings), what)
    ctx.outcomes.append(Outcome.ANSWERED)
