"""Check requests against GitHub's OpenAPI description (pure: no I/O beyond loading it)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from openapi_schema_validator import OAS30Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4

SPEC_URI = "urn:forge:api.github.com.json"
METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
PARAM_RE = re.compile(r"\{([^}]+)\}")
MAX_REASON_ERRORS = 5
# Trailing parameters GitHub lets span `/` (file paths, refs, branch names like `gantry/1-x`).
SLASHED_PARAMS = frozenset({"path", "ref", "branch", "basehead"})


@dataclass(frozen=True)
class Param:
    """One path or query parameter of an operation."""

    name: str
    location: str
    required: bool
    pointer: str


@dataclass(frozen=True)
class Operation:
    """One method on one path template of the description."""

    method: str
    template: str
    operation_id: str
    params: tuple[Param, ...]
    body_required: bool
    body_media_types: tuple[str, ...]


@dataclass(frozen=True)
class Match:
    """A request path resolved to an operation and its decoded path parameters."""

    operation: Operation
    path_params: dict[str, str]


@dataclass(frozen=True)
class Verdict:
    """Why a request is not one GitHub would accept, and the status GitHub would answer."""

    status: int
    reason: str


@dataclass(frozen=True)
class _Route:
    template: str
    strict: re.Pattern[str]
    greedy: re.Pattern[str] | None
    literals: int
    operations: Mapping[str, Operation]


def _escape_pointer(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(_escape_pointer(p) for p in parts)


def _compile_template(template: str, *, greedy_last: bool) -> re.Pattern[str]:
    """Turn `/repos/{owner}/{repo}` into a regex; the greedy form lets the last param hold `/`."""
    names = PARAM_RE.findall(template)
    pattern = re.escape(template)
    for index, name in enumerate(names):
        spans = greedy_last and index == len(names) - 1 and template.endswith("{" + name + "}")
        group = f"(?P<p{index}>{'.+' if spans else '[^/]+'})"
        pattern = pattern.replace(re.escape("{" + name + "}"), group, 1)
    return re.compile(pattern)


def _greedy_pattern(template: str) -> re.Pattern[str] | None:
    """The pattern letting a trailing slashed parameter hold `/`, if the template has one."""
    names = PARAM_RE.findall(template)
    if not names or names[-1] not in SLASHED_PARAMS:
        return None
    return _compile_template(template, greedy_last=True)


class OpenAPISpec:
    """GitHub's REST description, compiled for matching and validating requests."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._document = document
        self._registry: Registry[Any] = Registry().with_resource(
            SPEC_URI, DRAFT4.create_resource(document)
        )
        self._routes = [self._route(t, item) for t, item in document["paths"].items()]
        self._routes.sort(key=lambda r: -r.literals)
        self._validators: dict[str, Any] = {}

    def _resolve(self, node: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
        """Follow a local `$ref` one level; return the target and its pointer."""
        ref = node.get("$ref")
        if ref is None:
            return node, None
        target: Any = self._document
        for part in ref.removeprefix("#/").split("/"):
            key = part.replace("~1", "/").replace("~0", "~")
            target = target[int(key)] if isinstance(target, list) else target[key]
        return target, ref

    def _route(self, template: str, item: Mapping[str, Any]) -> _Route:
        operations = {
            method: self._operation(template, method, op, item.get("parameters", []))
            for method, op in item.items()
            if method in METHODS
        }
        literals = len([s for s in template.split("/") if s and "{" not in s])
        return _Route(
            template=template,
            strict=_compile_template(template, greedy_last=False),
            greedy=_greedy_pattern(template),
            literals=literals,
            operations=operations,
        )

    def _operation(
        self, template: str, method: str, op: Mapping[str, Any], shared: list[Any]
    ) -> Operation:
        params: list[Param] = []
        for index, raw in enumerate([*shared, *op.get("parameters", [])]):
            param, ref = self._resolve(raw)
            if param["in"] not in ("path", "query"):
                continue
            own = _pointer("paths", template, method, "parameters", str(index), "schema")
            pointer = f"{ref}/schema" if ref else own
            required = bool(param.get("required", False))
            params.append(Param(param["name"], param["in"], required, pointer))
        body, _ = self._resolve(op.get("requestBody", {}))
        return Operation(
            method=method.upper(),
            template=template,
            operation_id=str(op.get("operationId", "")),
            params=tuple(params),
            body_required=bool(body.get("required", False)),
            body_media_types=tuple(body.get("content", {})),
        )

    def match(self, method: str, raw_path: str) -> Match | None:
        """Find the operation for `method` on `raw_path` (still percent-encoded)."""
        lowered = method.lower()
        for attempt in ("strict", "greedy"):
            for route in self._routes:
                if lowered not in route.operations:
                    continue
                pattern = route.strict if attempt == "strict" else route.greedy
                found = pattern.fullmatch(raw_path) if pattern is not None else None
                if found is not None:
                    return Match(route.operations[lowered], _path_params(route.template, found))
        return None

    def schema(self, pointer: str) -> Mapping[str, Any]:
        """The schema at `pointer` (`#/components/schemas/...`), one `$ref` followed."""
        found, _ = self._resolve({"$ref": pointer})
        return found

    def validator(self, pointer: str) -> Any:
        """Return a (cached) validator for the schema at `pointer` in the description."""
        cached = self._validators.get(pointer)
        if cached is None:
            cached = OAS30Validator({"$ref": SPEC_URI + pointer}, registry=self._registry)
            self._validators[pointer] = cached
        return cached

    def check(
        self,
        method: str,
        raw_path: str,
        query: Mapping[str, str],
        content_type: str | None,
        body: bytes,
    ) -> tuple[Match | None, Verdict | None]:
        """Match a request and say why GitHub would refuse it, if it would."""
        found = self.match(method, raw_path)
        if found is None:
            return None, Verdict(
                404, f"no operation {method.upper()} {raw_path} in the description"
            )
        verdict = self._check_query(found.operation, query) or self._check_body(
            found.operation, content_type, body
        )
        return found, verdict

    def _check_query(self, op: Operation, query: Mapping[str, str]) -> Verdict | None:
        for param in op.params:
            if param.location != "query":
                continue
            if param.name not in query:
                if param.required:
                    return Verdict(400, f"missing required query parameter {param.name!r}")
                continue
            value = _coerce(query[param.name], self._schema_type(param.pointer))
            errors = _messages(self.validator(param.pointer), value)
            if errors:
                return Verdict(422, f"query parameter {param.name!r}: {errors}")
        return None

    def _schema_type(self, pointer: str) -> str | None:
        schema, _ = self._resolve({"$ref": pointer})
        kind = schema.get("type")
        return kind if isinstance(kind, str) else None

    def _check_body(self, op: Operation, content_type: str | None, body: bytes) -> Verdict | None:
        if not body:
            if op.body_required:
                return Verdict(400, f"{op.operation_id} requires a request body")
            return None
        if not op.body_media_types:
            return None
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type not in op.body_media_types:
            expected = ", ".join(op.body_media_types)
            return Verdict(400, f"content type {media_type or 'none'!r}, expected {expected}")
        if media_type != "application/json":
            return None
        try:
            document = json.loads(body)
        except ValueError:
            return Verdict(400, "Problems parsing JSON")
        pointer = _pointer(
            "paths", op.template, op.method.lower(), "requestBody", "content", media_type, "schema"
        )
        errors = _messages(self.validator(pointer), document)
        return Verdict(422, f"request body: {errors}") if errors else None


def _path_params(template: str, found: re.Match[str]) -> dict[str, str]:
    names = PARAM_RE.findall(template)
    return {name: unquote(found.group(f"p{i}")) for i, name in enumerate(names)}


def _coerce(value: str, kind: str | None) -> Any:
    """Query strings are text; give the validator the type the schema asks for when it parses."""
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    if kind == "array":
        return value.split(",")
    return value


def _messages(validator: Any, instance: Any) -> str:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    parts = [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in errors[:MAX_REASON_ERRORS]
    ]
    return "; ".join(parts)


@functools.cache
def load_spec(path: Path) -> OpenAPISpec:
    """Load and compile the description once per process."""
    with path.open("rb") as handle:
        return OpenAPISpec(json.load(handle))
