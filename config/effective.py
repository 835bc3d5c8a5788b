"""The config a repository runs with: its organisation's defaults, its own file over them,
the server's defaults for what neither sets, all within the operator's ceilings."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import ValidationError

from config.ceilings import Refusal, apply_ceilings
from config.org_defaults import Origins, merge_layers
from config.provenance import FileLayer, Layer, Stages, longest_prefix, trace
from config.repo_config import (
    CONFIG_PATH,
    ConfigError,
    ParsedConfig,
    Problem,
    RepoConfig,
    apply_server_defaults,
    describe_error,
    parse_repo_config,
)
from config.settings import Settings

log = logging.getLogger(__name__)
UNREADABLE = "Gantry could not read this file; this is a bug in Gantry, please report it"


def parse_effective_config(
    text: str | None,
    settings: Settings | None = None,
    source: str = CONFIG_PATH,
    org_text: str | None = None,
    org_source: str | None = None,
) -> ParsedConfig:
    """Read the repository's file over the organisation's (None: no org file), or raise
    `ConfigError` naming the file and line of each problem."""
    try:
        return _parse(text, settings, source, org_text, org_source)
    except ConfigError:
        raise
    except Exception as exc:
        raise unreadable(source, exc) from exc


def unreadable(source: str, exc: Exception) -> ConfigError:
    """A file we fail to read is still a broken file to its writer: intake replies, the
    check run fails, the CLI says so; a crash here would drop the mention unanswered."""
    log.exception("%s: reading the config failed", source)
    return ConfigError([Problem("", f"{UNREADABLE} ({type(exc).__name__})", 1)], source)


def _read_file(text: str | None, source: str) -> ParsedConfig:
    """One file alone; a bug while reading it is that file's (the org's is not the repo's)."""
    try:
        return parse_repo_config(text, None, source)
    except ConfigError:
        raise
    except Exception as exc:
        raise unreadable(source, exc) from exc


def _parse(
    text: str | None,
    settings: Settings | None,
    source: str,
    org_text: str | None,
    org_source: str | None,
) -> ParsedConfig:
    """`parse_effective_config` without the backstop."""
    repo = _read_file(text, source)
    files = [FileLayer(Layer.REPOSITORY, source, repo.document.lines)]
    documents = [repo]
    if org_text is not None:
        org = _read_file(org_text, org_source or "organisation defaults")
        files.insert(0, FileLayer(Layer.ORG, org.source, org.document.lines))
        documents.insert(0, org)
    merged, origins = merge_layers([d.document.data for d in documents])
    try:
        config = RepoConfig.model_validate(merged)
    except ValidationError as exc:
        raise merged_errors(exc, documents, origins) from None
    served = apply_server_defaults(config, settings)
    capped, cappings, refusals = (
        apply_ceilings(served, settings) if settings is not None else (served, [], [])
    )
    stages = Stages(*(c.model_dump(mode="json") for c in (config, served, capped)))
    notes = {c.path: c.reason for c in cappings}
    # The server's DEFAULT_IMAGE fills `image` whenever no file names one.
    server_paths = ("image",) if settings is not None else ()
    provenance = trace(stages, files, origins, notes, server_paths)
    parsed = ParsedConfig(capped, repo.document, source, provenance)
    if refusals:
        raise refused(parsed, refusals)
    return parsed


def merged_errors(
    exc: ValidationError, documents: Sequence[ParsedConfig], origins: Origins
) -> ConfigError:
    """The errors of the merged layers, each at the file and line that set the value in
    error (a secret the organisation lists, that the repository's `env` also sets, is the
    organisation's `secrets` line); the repository's problems first. Each file alone was
    valid, so only a value that clashes with another layer's gets here."""
    placed = []
    for error in exc.errors(include_url=False):
        found = longest_prefix(tuple(error["loc"]), origins)
        layer = documents[found[1]] if found is not None else documents[-1]
        placed.append((layer.source, describe_error(error, layer.document)))
    repository = documents[-1].source
    first = next((f for f, _ in placed if f == repository), placed[0][0])
    return ConfigError([p for f, p in placed if f == first], first)


def refused(parsed: ParsedConfig, refusals: Sequence[Refusal]) -> ConfigError:
    """The refusals as problems of the file that set them (the repository's first)."""
    placed = []
    for refusal in refusals:
        path = tuple(refusal.path.split("."))
        where = parsed.set_in(*path) or (parsed.source, 1)
        placed.append((where[0], Problem(refusal.path, refusal.message, where[1])))
    first = next((f for f, _ in placed if f == parsed.source), placed[0][0])
    return ConfigError([p for f, p in placed if f == first], first)
