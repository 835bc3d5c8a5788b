"""The `services` key: validated names, images, readiness and limits, errors at their line."""

from __future__ import annotations

from datetime import timedelta

import pytest

from config.repo_config import ConfigError, parse_repo_config


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_repo_config(text)
    return info.value.lines()


def test_a_full_service_is_read_with_its_defaults() -> None:
    config = parse_repo_config(
        "services:\n"
        "  db:\n"
        "    image: postgres:16\n"
        "    env: {POSTGRES_PASSWORD: test, PORT: 5432}\n"
        "    ready: pg_isready -U postgres\n"
        "  cache: {image: redis:7}\n"
    ).config
    db, cache = config.services["db"], config.services["cache"]
    assert db.env == {"POSTGRES_PASSWORD": "test", "PORT": "5432"}
    assert db.ready == "pg_isready -U postgres"
    assert cache.ready is None
    assert cache.ready_timeout == timedelta(seconds=60)
    assert (cache.resources.cpus, cache.resources.memory, cache.resources.pids) == (
        1.0,
        1024**3,
        256,
    )
    assert parse_repo_config(None).config.services == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("services:\n  DB: {image: x}\n", ".github/gantry.yml:2: services.DB: must be a host name"),
        ("services:\n  gantry: {image: x}\n", "services.gantry: must be a host name"),
        ("services:\n  db: {image: 'no spaces'}\n", "services.db.image: must be a Docker image"),
        ("services:\n  db: {env: {A: b}}\n", "services.db: Field required"),
        ("services:\n  db:\n    image: x\n    imgae: y\n", ":4: services.db.imgae: unknown key"),
        ("services:\n  db: {image: x, ready_timeout: 1h}\n", "must be between 1s and 10m"),
        ("services:\n  db: {image: x, env: {GANTRY_X: y}}\n", "GANTRY_* variables are set by"),
        ("services:\n  db: {image: x, secrets: [lower]}\n", "must be an upper-case name"),
        ("services:\n  db: {image: x, resources: {memory: 1t}}\n", "services.db.resources.memory"),
        ("services:\n  db: {image: x, resources: {pids: 100000}}\n", "less than or equal to 4096"),
        ("services:\n  db: {image: x, ready: ''}\n", "services.db.ready: must be non-empty"),
    ],
)
def test_mistakes_are_reported_with_their_path_and_line(text: str, expected: str) -> None:
    assert any(expected in line for line in problems(text)), problems(text)


def test_at_most_five_services() -> None:
    six = "services:\n" + "".join(f"  s{n}: {{image: x}}\n" for n in range(6))
    assert any("at most 5" in line for line in problems(six))
