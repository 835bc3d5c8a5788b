"""Shared REST plumbing: errors, authentication, pagination, and the request middlewares."""

from __future__ import annotations

import json
import time
from typing import Any, NoReturn

from aiohttp import web
from aiohttp.typedefs import Handler

from forge import render
from forge.auth import JWTError, Scheme, jwt_issuer, parse_authorization, verify_app_jwt
from forge.context import API_PREFIX, RequestRecord, Violation, context_of
from forge.faults import ConnectionDropped, apply_fault
from forge.state import App, Repo, Token

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
RATE_LIMIT = 5000
NOT_INTEGRATION = "Resource not accessible by integration"


class ApiError(Exception):
    """An error answered with GitHub's JSON error body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = render.error(message, **extra)


def fail(status: int, message: str, **extra: Any) -> NoReturn:
    """Stop the handler with a GitHub-style error."""
    raise ApiError(status, message, **extra)


def invalid(resource: str, field: str, code: str = "invalid", **extra: Any) -> NoReturn:
    """GitHub's 422 `Validation Failed` with one error entry."""
    entry = {"resource": resource, "field": field, "code": code, **extra}
    fail(422, "Validation Failed", errors=[entry])


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response with GitHub's rate-limit headers."""
    reset = str(int(time.time()) + 3600)
    limits = {
        "X-RateLimit-Limit": str(RATE_LIMIT),
        "X-RateLimit-Remaining": str(RATE_LIMIT - 1),
        "X-RateLimit-Used": "1",
        "X-RateLimit-Reset": reset,
        "X-RateLimit-Resource": "core",
    }
    return web.json_response(body, status=status, headers={**limits, **(headers or {})})


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (already checked against the description)."""
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        fail(400, "Problems parsing JSON")
    if not isinstance(body, dict):
        fail(400, "Problems parsing JSON")
    return body


def app_from_jwt(request: web.Request) -> App:
    """The App whose valid JWT authenticates this request, or 401."""
    ctx = context_of(request)
    credential = parse_authorization(request.headers.get("Authorization"))
    if credential.scheme is not Scheme.JWT:
        fail(401, "A JSON web token could not be decoded")
    try:
        issuer = jwt_issuer(credential.value)
        app = ctx.state.apps.get(int(issuer)) if issuer.isdigit() else None
        if app is None:
            fail(401, f"Integration not found for iss {issuer!r}")
        verify_app_jwt(credential.value, app.keys.public_pem, ctx.state.clock())
    except JWTError as exc:
        fail(401, str(exc))
    return app


def token_of(request: web.Request) -> Token:
    """The valid installation token of this request, or 401 `Bad credentials`."""
    ctx = context_of(request)
    credential = parse_authorization(request.headers.get("Authorization"))
    if credential.scheme is Scheme.JWT:
        fail(403, NOT_INTEGRATION)
    token = ctx.state.valid_token(credential.value) if credential.scheme is Scheme.TOKEN else None
    if token is None:
        fail(401, "Bad credentials")
    return token


def repo_of(request: web.Request) -> tuple[Repo, Token]:
    """The repo named in the path, visible to this request's token, or 401/404."""
    token = token_of(request)
    repo = context_of(request).state.repo(request.match_info["owner"], request.match_info["repo"])
    covered = repo is not None and (
        token.installation.account is repo.owner and repo.name in token.installation.repos
    )
    if repo is None or not covered:
        fail(404, "Not Found")
    return repo, token


def int_param(request: web.Request, name: str) -> int:
    """A numeric path parameter (the description has already checked it)."""
    value = request.match_info[name]
    if not value.isdigit():
        fail(404, "Not Found")
    return int(value)


def paginate(request: web.Request, items: list[Any]) -> web.Response:
    """Answer one page of `items` with a `Link` header like GitHub's."""
    per_page = min(int(request.query.get("per_page", DEFAULT_PER_PAGE)), MAX_PER_PAGE)
    page = max(int(request.query.get("page", 1)), 1)
    chunk = items[(page - 1) * per_page : page * per_page]
    headers = {}
    if page * per_page < len(items):
        url = request.url.update_query(page=page + 1, per_page=per_page)
        headers["Link"] = f'<{url}>; rel="next"'
    return json_response(chunk, headers=headers)


def _route_path(request: web.Request) -> str:
    """The path the contract and the fault rules see: without the API prefix for REST."""
    path = request.raw_path.split("?", 1)[0]
    return path.removeprefix(API_PREFIX) if path.startswith(API_PREFIX + "/") else path


@web.middleware
async def record_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log every request with the status it got; 0 means the connection was reset."""
    ctx = context_of(request)
    path = _route_path(request)
    try:
        response = await handler(request)
    except ConnectionDropped:
        ctx.requests.append(RequestRecord(request.method, path, 0))
        # The transport is already aborted: aiohttp drops this response quietly.
        return web.Response(status=499)
    except web.HTTPException as exc:
        ctx.requests.append(RequestRecord(request.method, path, exc.status))
        raise
    ctx.requests.append(RequestRecord(request.method, path, response.status))
    return response


@web.middleware
async def contract_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse and record REST requests GitHub's OpenAPI description does not allow."""
    if not request.path.startswith(API_PREFIX + "/"):
        return await handler(request)
    ctx = context_of(request)
    path = _route_path(request)
    body = await request.read()
    content_type = request.headers.get("Content-Type")
    query = {k: v for k, v in request.query.items()}
    _, verdict = ctx.spec.check(request.method, path, query, content_type, body)
    if verdict is None and request.match_info.http_exception is not None:
        reason = "GitHub has this operation but the stand-in does not implement it"
        ctx.violations.append(Violation(request.method, path, reason))
        return json_response(render.error("Not Found"), status=404)
    if verdict is not None:
        ctx.violations.append(Violation(request.method, path, verdict.reason))
        message = {404: "Not Found", 422: "Validation Failed"}.get(verdict.status, verdict.reason)
        return json_response(render.error(message, reason=verdict.reason), status=verdict.status)
    return await handler(request)


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply injected faults before the handler runs."""
    return await apply_fault(request, _route_path(request), context_of(request).faults, handler)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn `ApiError` into GitHub's JSON error responses."""
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response(exc.body, status=exc.status)


MIDDLEWARES = (record_middleware, contract_middleware, fault_middleware, error_middleware)
