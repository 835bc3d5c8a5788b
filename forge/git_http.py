"""Git's smart HTTP protocol through `git http-backend` (CGI), behind token Basic auth."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from forge.auth import parse_basic_password
from forge.context import context_of
from forge.git_repo import ISOLATED_ENV
from runner import child_process

CHUNK_SIZE = 64 * 1024
BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="GitHub"'}
REMOTE_USER = "x-access-token"
PASSED_HEADERS = {"Git-Protocol": "GIT_PROTOCOL", "Content-Encoding": "HTTP_CONTENT_ENCODING"}


def cgi_env(request: web.Request, project_root: str, path_info: str) -> dict[str, str]:
    """The CGI environment `git http-backend` reads."""
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        **ISOLATED_ENV,
        "GIT_PROJECT_ROOT": project_root,
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": path_info,
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.query_string,
        "REMOTE_USER": REMOTE_USER,
        "REMOTE_ADDR": request.remote or "127.0.0.1",
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    if request.content_length is not None:
        env["CONTENT_LENGTH"] = str(request.content_length)
    for header, name in PASSED_HEADERS.items():
        if header in request.headers:
            env[name] = request.headers[header]
    return env


def parse_cgi_headers(raw: list[bytes]) -> tuple[int, dict[str, str]]:
    """Split CGI header lines into a status and HTTP headers."""
    status = 200
    headers: dict[str, str] = {}
    for line in raw:
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers[name.strip()] = value.strip()
    return status, headers


async def handle_git(request: web.Request) -> web.StreamResponse:
    """Serve `/{owner}/{repo}.git/...` for clone, fetch and push with an installation token."""
    ctx = context_of(request)
    owner, name = request.match_info["owner"], request.match_info["repo"]
    password = parse_basic_password(request.headers.get("Authorization"))
    token = ctx.state.valid_token(password) if password else None
    if token is None:
        raise web.HTTPUnauthorized(headers=BASIC_CHALLENGE, text="Authentication failed\n")
    repo = ctx.state.repo(owner, name)
    if repo is None or repo.name not in token.installation.repos:
        raise web.HTTPNotFound(text="Repository not found\n")
    if token.installation.account is not repo.owner:
        raise web.HTTPNotFound(text="Repository not found\n")
    relative = repo.path.relative_to(ctx.repos_dir).as_posix()
    path_info = f"/{relative}/{request.match_info['tail']}"
    return await run_backend(request, cgi_env(request, str(ctx.repos_dir), path_info))


async def run_backend(request: web.Request, env: dict[str, str]) -> web.StreamResponse:
    """Run the CGI, streaming the request body in and the response body out."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    pump = asyncio.create_task(_pump_body(request, proc.stdin))
    try:
        status, headers = parse_cgi_headers(await _read_cgi_headers(proc.stdout))
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        while chunk := await proc.stdout.read(CHUNK_SIZE):
            await response.write(chunk)
        await response.write_eof()
        await pump
        await proc.wait()
        return response
    finally:
        pump.cancel()
        # The client may leave just as the CGI exits: `proc.kill()` would reap it and make
        # asyncio guess its exit status.
        await child_process.stop(proc)


async def _read_cgi_headers(stdout: asyncio.StreamReader) -> list[bytes]:
    lines = []
    while line := (await stdout.readline()).rstrip(b"\r\n"):
        lines.append(line)
    return lines


async def _pump_body(request: web.Request, stdin: asyncio.StreamWriter) -> None:
    """Feed the request body to the CGI, then close its stdin so it sees EOF."""
    try:
        async for chunk in request.content.iter_chunked(CHUNK_SIZE):
            stdin.write(chunk)
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        stdin.close()
