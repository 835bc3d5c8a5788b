"""What the pipeline needs from an executor: an environment to run in, and to drop it after."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from runner.environment import EnvironmentRequest
from runner.mirror import Mirrors
from runner.sandbox import ExecResult
from runner.tasklog import TaskLog


class RunningEnvironment(Protocol):
    """A checkout at the task's SHA with setup done, and a scratch directory beside it."""

    @property
    def workspace(self) -> str: ...

    @property
    def scratch(self) -> str: ...

    @property
    def gateway_url(self) -> str | None:
        """Where the agent reaches the model gateway (None: no gateway runs)."""
        ...

    async def run(
        self,
        command: str,
        log: TaskLog,
        phase: str,
        limit_s: float,
        env: Mapping[str, str] = ...,
    ) -> ExecResult: ...

    async def end_phase(self) -> None:
        """Stop whatever the last phase left running (the files stay)."""
        ...

    async def close_gateway(self) -> None:
        """The agent phase is over: nothing run after it reaches the model gateway."""
        ...

    async def write_file(self, path: str, data: bytes) -> None: ...

    async def read_file(self, path: str, max_bytes: int) -> bytes: ...


E = TypeVar("E", bound=RunningEnvironment)


class Executor(Protocol[E]):
    """Docker (the default) or the host itself (development only)."""

    mirrors: Mirrors

    async def prepare(self, request: EnvironmentRequest, log: TaskLog) -> E: ...

    async def release(self, environment: E) -> None: ...

    async def blocked_attempts(self, environment: E) -> list[dict[str, Any]]: ...
