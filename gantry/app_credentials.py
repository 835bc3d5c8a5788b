"""Where `gantry app create` keeps the App's credentials: a mode-600 key file and `.env`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from gantry import app_manifest as core
from gantry.app_manifest import Conversion

SECRET_MODE = 0o600


def store_credentials(
    conversion: Conversion,
    key_file: Path,
    env_file: Path,
    public_url: str | None,
    *,
    replace: bool,
) -> None:
    """The key to its own file, then the id, key path and webhook secret to .env (mode 600)."""
    write_secret_file(key_file, conversion.pem, replace=replace)
    values = {
        core.APP_ID_VAR: str(conversion.app_id),
        core.KEY_PATH_VAR: str(key_file),
        core.SECRET_VAR: conversion.webhook_secret,
    }
    if public_url is not None:
        values[core.PUBLIC_URL_VAR] = public_url
    old = env_file.read_text(encoding="utf-8") if env_file.is_file() else ""
    write_secret_file(env_file, core.merge_env(old, values), replace=True)


def write_secret_file(path: Path, text: str, *, replace: bool) -> None:
    """Write `text` readable by this user only; refuse to replace a file unless told to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not replace:
        # O_EXCL: a key that appeared since the first check is still never overwritten.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    # A new file renamed over the old one: the old mode (maybe 644) does not carry over.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
