"""The live task page over HTTP: the log stream (SSE), its signatures, and a repository's task
list; the store and the log files are real, the task is driven by the test."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot import repo_page, task_page, task_stream
from bot.app import SERVICES, STREAMS
from config.settings import Settings
from gantry.compose import create_app
from runner.results import Phase, PhaseStatus
from runner.store import TaskStore
from runner.task import NewTask, Task, TaskState
from runner.tasklog import TaskLog

SECRET = "live-page-secret"
REPO, OTHER = "octo/hello", "octo/second"
EVENT_TIMEOUT_S = 10


def private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass
class Page:
    """A Gantry serving task pages (no workers: the test plays the task)."""

    server: TestServer
    settings: Settings
    session: aiohttp.ClientSession

    @property
    def store(self) -> TaskStore:
        return self.server.app[SERVICES].store

    async def add(self, repo: str = REPO, request: str = "fix it", number: int = 7) -> Task:
        new = NewTask(
            repo=repo, installation_id=1, number=number, is_pull_request=False, title="t",
            clone_url="https://example.invalid/x.git", default_branch="main", comment_id=1,
            comment_kind="issue_comment", requester="alice", kind="request", request=request,
            head_ref=None, head_sha=None, thread_body="",
        )  # fmt: skip
        task = await self.store.add_task(new, f"delivery-{repo}-{request}")
        await self.store.set_state(task.id, TaskState.RUNNING)
        return task

    def log(self, task: Task) -> TaskLog:
        return TaskLog(task_page.log_path(self.settings.data_dir, task.id))

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def stream_url(self, task_id: int, sig: str | None = None) -> str:
        return self.url(f"/tasks/{task_id}/log?sig={sig or task_page.signature(SECRET, task_id)}")

    async def status(self, path: str) -> int:
        async with self.session.get(self.url(path)) as response:
            return response.status


@pytest_asyncio.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    settings = Settings(
        github_webhook_secret=SECRET,
        github_app_id=1,
        github_private_key=private_key(),
        bot_handle="gantry",
        data_dir=tmp_path / "data",
        public_url="https://gantry.example/prefix/",
    )
    server = TestServer(create_app(settings, workers=False))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Page(server, settings, session)
    finally:
        await server.close()


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, object]
    id: str | None


async def next_event(
    response: aiohttp.ClientResponse, quiet_s: float = EVENT_TIMEOUT_S
) -> Event | None:
    """The next SSE event (comments and `retry` skipped); None when the stream has ended."""
    fields: dict[str, str] = {}
    while True:
        raw = await asyncio.wait_for(response.content.readline(), quiet_s)
        if not raw:
            return None
        line = raw.decode().rstrip("\n")
        if line == "" and "data" in fields:
            data = json.loads(fields["data"])
            return Event(fields.get("event", "message"), data, fields.get("id"))
        if line and not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


async def lines_until(
    response: aiohttp.ClientResponse, wanted: str, quiet_s: float = EVENT_TIMEOUT_S
) -> list[str]:
    """Every streamed log line up to the event with the one that contains `wanted`."""
    seen: list[str] = []
    while (event := await next_event(response, quiet_s)) is not None:
        if event.name == "lines":
            seen += [str(line) for line in event.data["lines"]]  # type: ignore[attr-defined]
            if any(wanted in line for line in seen):
                return seen
    raise AssertionError(f"the stream ended without {wanted!r}: {seen}")


async def rest(response: aiohttp.ClientResponse, quiet_s: float = EVENT_TIMEOUT_S) -> list[Event]:
    """The events until the stream ends."""
    events = []
    while (event := await next_event(response, quiet_s)) is not None:
        events.append(event)
    return events


async def test_lines_arrive_while_the_task_runs_and_the_stream_ends_after_it(page: Page) -> None:
    task = await page.add()
    log = page.log(task)
    log.line("agent", "first line")
    async with page.session.get(page.stream_url(task.id)) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert await lines_until(response, "first line") == ["[agent] first line"]
        log.line("agent", "second line")
        assert await lines_until(response, "second line") == ["[agent] second line"]
        assert (await page.store.get(task.id)).state is TaskState.RUNNING  # type: ignore[union-attr]
        await page.store.record_phase(task.id, Phase("agent", PhaseStatus.DONE, 1.5))
        log.line("checks", "last words")
        log.close()
        await page.store.set_state(task.id, TaskState.SUCCEEDED)
        events = await rest(response)
    lines = [line for e in events if e.name == "lines" for line in e.data["lines"]]  # type: ignore[attr-defined]
    assert lines == ["[checks] last words"]
    assert events[-1].name == "end"
    assert events[-1].data == {"state": "succeeded"}
    phases = [e.data["phases"] for e in events if e.name == "phases"]
    assert [{"name": "agent", "status": "done", "seconds": 1.5, "note": ""}] in phases


async def test_a_stream_resumes_at_its_last_event_after_the_client_left(page: Page) -> None:
    task = await page.add()
    log = page.log(task)
    log.line("agent", "one")
    async with page.session.get(page.stream_url(task.id)) as response:
        event = await next_event(response)
        while event is not None and event.name != "lines":
            event = await next_event(response)
        assert event is not None
        assert event.id is not None
    log.line("agent", "two")  # written after the first client left
    resume = {"Last-Event-ID": event.id}
    async with page.session.get(page.stream_url(task.id), headers=resume) as response:
        assert await lines_until(response, "two") == ["[agent] two"]
    log.close()


async def test_the_stream_never_sends_another_tasks_log(page: Page) -> None:
    mine, theirs = await page.add(request="mine"), await page.add(OTHER, request="theirs")
    for task, text in ((mine, "mine only"), (theirs, "secret of the other task")):
        log = page.log(task)
        log.line("agent", text)
        log.close()
        await page.store.set_state(task.id, TaskState.FAILED)
    async with page.session.get(page.stream_url(mine.id)) as response:
        events = await rest(response)
    lines = [line for e in events if e.name == "lines" for line in e.data["lines"]]  # type: ignore[attr-defined]
    assert lines == ["[agent] mine only"]
    assert events[-1].data == {"state": "failed"}
    # The other task's signature opens nothing of this task.
    other_sig = task_page.signature(SECRET, theirs.id)
    assert await page.status(f"/tasks/{mine.id}/log?sig={other_sig}") == 404


@pytest.mark.parametrize("suffix", ["?sig=0123456789abcdef0123456789abcdef", "?sig=", ""])
async def test_a_forged_or_missing_signature_is_404_everywhere(page: Page, suffix: str) -> None:
    task = await page.add()
    assert await page.status(f"/tasks/{task.id}{suffix}") == 404
    assert await page.status(f"/tasks/{task.id}/log{suffix}") == 404
    assert await page.status(f"/repos/{REPO}/tasks{suffix}") == 404
    good = task_page.signature(SECRET, task.id)
    assert await page.status(f"/tasks/{task.id}/log?sig={good}&offset=0") == 200
    repo_sig = task_page.repo_signature(SECRET, REPO)
    assert await page.status(f"/repos/{OTHER}/tasks?sig={repo_sig}") == 404
    assert await page.status(f"/repos/{REPO}/tasks?sig={good}") == 404  # a task's sig: no
    await page.store.set_state(task.id, TaskState.CANCELLED)


async def test_the_running_page_follows_the_stream_from_where_its_log_ends(page: Page) -> None:
    task = await page.add(request="make <b>it</b> work")
    log = page.log(task)
    log.line("agent", "<script>alert(1)</script>")
    log.line("checks", "$ pytest -q")
    sig = task_page.signature(SECRET, task.id)
    async with page.session.get(page.url(f"/tasks/{task.id}?sig={sig}")) as response:
        assert response.status == 200
        text = await response.text()
        policy = response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "no-referrer"
    size = task_page.log_path(page.settings.data_dir, task.id).stat().st_size
    assert f'new EventSource("{task.id}/log?sig={sig}&offset={size}")' in text
    [nonce] = re.findall(r'<script nonce="([^"]+)">', text)
    assert f"script-src 'nonce-{nonce}'" in policy
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>alert" not in text
    assert "make &lt;b&gt;it&lt;/b&gt; work" in text
    assert "<pre id='checks'>[checks] $ pytest -q\n</pre>" in text
    assert 'http-equiv="refresh"' not in text
    # The stream link in the page, resolved as a browser would, opens this task's stream.
    stream = urljoin(str(response.url), f"{task.id}/log?sig={sig}&offset=0")
    async with page.session.get(stream) as live:
        assert await lines_until(live, "pytest") == [
            "[agent] <script>alert(1)</script>",
            "[checks] $ pytest -q",
        ]
    log.close()
    await page.store.set_state(task.id, TaskState.SUCCEEDED)
    async with page.session.get(page.url(f"/tasks/{task.id}?sig={sig}")) as response:
        assert "<script" not in await response.text()


async def test_the_repository_list_shows_only_that_repositorys_tasks(page: Page) -> None:
    first = await page.add(request="first <i>thing</i>", number=3)
    second = await page.add(request="second thing", number=4)
    other = await page.add(OTHER, request="not this one")
    await page.store.set_state(first.id, TaskState.SUCCEEDED)
    signed = task_page.signed_repo_url(page.url("/"), SECRET, REPO)
    async with page.session.get(signed) as response:
        assert response.status == 200
        text = await response.text()
        list_url = str(response.url)
    assert "first &lt;i&gt;thing&lt;/i&gt;" in text
    assert "second thing" in text
    assert "not this one" not in text
    assert f">#{other.id}</a>" not in text
    assert text.index(f">#{second.id}</a>") < text.index(f">#{first.id}</a>")  # newest first
    assert "<td>succeeded</td>" in text
    assert "<td>@alice</td>" in text
    links = re.findall(r"<a href='([^']+)'>", text)
    assert len(links) == 2
    for link in links:
        async with page.session.get(urljoin(list_url, link.replace("&amp;", "&"))) as task_view:
            assert task_view.status == 200
            assert REPO in await task_view.text()
    for task in (second, other):
        await page.store.set_state(task.id, TaskState.CANCELLED)


def test_signed_repo_url_keeps_the_public_urls_prefix() -> None:
    url = task_page.signed_repo_url("https://gantry.example/prefix/", SECRET, REPO)
    sig = task_page.repo_signature(SECRET, REPO)
    assert url == f"https://gantry.example/prefix/repos/octo/hello/tasks?sig={sig}"
    assert task_page.valid_repo(SECRET, REPO, sig)
    assert not task_page.valid_repo(SECRET, OTHER, sig)
    assert repo_page.task_link(SECRET, 5).startswith("../../../tasks/5?sig=")
    assert urljoin(url, repo_page.task_link(SECRET, 5)).startswith(
        "https://gantry.example/prefix/tasks/5?sig="
    )


def test_events_frame_any_text_as_one_data_line() -> None:
    frame = task_stream.event("lines", {"lines": ["a\rb", "c\n\nd", "<é>"]}, 42)
    text = frame.decode()
    assert text.startswith("event: lines\nid: 42\ndata: ")
    assert text.endswith("\n\n")
    assert text.count("\n") == 4
    assert "\r" not in text
    assert json.loads(text.split("data: ", 1)[1]) == {"lines": ["a\rb", "c\n\nd", "<é>"]}


def test_cut_lines_keeps_a_line_being_written_for_later() -> None:
    assert task_stream.cut_lines(b"a\nb\npart", everything=False) == (["a", "b"], 4)
    assert task_stream.cut_lines(b"part", everything=False) == ([], 0)
    assert task_stream.cut_lines(b"a\npart", everything=True) == (["a", "part"], 6)
    assert task_stream.cut_lines("é\n".encode(), everything=False) == (["é"], 3)


def test_start_offset_accepts_only_a_position_inside_the_file() -> None:
    assert task_stream.start_offset("10", 20) == 10
    assert task_stream.start_offset("20", 20) == 20
    assert task_stream.start_offset("21", 20) == 0
    assert task_stream.start_offset("-1", 20) == 0
    assert task_stream.start_offset("x", 20) == 0
    assert task_stream.start_offset(None, 20) == 0


def test_a_snapshot_holds_whole_lines_and_says_where_the_stream_goes_on() -> None:
    assert task_page.snapshot_of(b"a\nb\npart", 0) == task_page.LogSnapshot("a\nb\n", 4)
    assert task_page.snapshot_of(b"tail\nb\npart", 100) == task_page.LogSnapshot("b\n", 107)
    assert task_page.snapshot_of(b"no newline", 100) == task_page.LogSnapshot("", 100)


FAST = task_stream.Pace(poll_s=0.01, status_s=0.01, heartbeat_s=0.05, grace_s=0.05)


async def test_a_follower_stops_when_its_client_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "task.log"
    path.write_text("[agent] hello\n")

    async def running() -> task_stream.Status:
        return task_stream.Status(TaskState.RUNNING, ())

    frames: list[bytes] = []
    gone = lambda: len(frames) > 5  # noqa: E731 (the client leaves while the task still runs)
    async for frame in task_stream.LogFollower(path, 0, running, gone, FAST).events():
        frames.append(frame)
    assert len(frames) == 6
    assert b"[agent] hello" in b"".join(frames)
    assert task_stream.HEARTBEAT in frames
    assert not any(f.startswith(b"event: end") for f in frames)


async def test_a_follower_drains_an_unterminated_last_line_before_its_end(tmp_path: Path) -> None:
    path = tmp_path / "task.log"
    path.write_text("[agent] done\n[agent] no newline")

    async def ended() -> task_stream.Status:
        return task_stream.Status(TaskState.CANCELLED, ())

    follower = task_stream.LogFollower(path, 0, ended, lambda: False, FAST)
    frames = [frame async for frame in follower.events()]
    text = b"".join(frames).decode()
    assert '"[agent] done"' in text
    assert '"[agent] no newline"' in text
    assert frames[-1].startswith(b"event: end\n")
    assert follower.offset == path.stat().st_size


async def test_open_streams_end_when_the_server_shuts_down(page: Page) -> None:
    task = await page.add()
    page.log(task).line("agent", "still running")
    async with page.session.get(page.stream_url(task.id)) as response:
        await lines_until(response, "still running")
        started = time.monotonic()
        await page.server.close()  # aiohttp would wait up to 60 s for a handler that goes on
        assert time.monotonic() - started < 5
        events = await rest(response)
    assert "end" not in [e.name for e in events]  # the browser reconnects and resumes


async def test_streams_beyond_the_limit_are_told_to_come_back(page: Page) -> None:
    task = await page.add()
    page.server.app[STREAMS].limit = 1
    async with page.session.get(page.stream_url(task.id)) as first:
        assert first.status == 200
        await next_event(first)
        assert (
            await page.status(f"/tasks/{task.id}/log?sig={task_page.signature(SECRET, task.id)}")
            == 503
        )
    await asyncio.sleep(0.5)  # the first stream's handler notices its client left
    async with page.session.get(page.stream_url(task.id)) as again:
        assert again.status == 200


async def test_a_follower_keeps_going_when_an_ended_task_runs_again(tmp_path: Path) -> None:
    path = tmp_path / "task.log"
    path.write_text("")
    states = iter([TaskState.FAILED, TaskState.QUEUED, TaskState.RUNNING])
    seen: list[TaskState] = []

    async def requeued() -> task_stream.Status:
        state = next(states, TaskState.SUCCEEDED)
        seen.append(state)
        return task_stream.Status(state, ())

    pace = task_stream.Pace(poll_s=0.01, status_s=0.03, heartbeat_s=10, grace_s=0.05)
    frames = [
        f async for f in task_stream.LogFollower(path, 0, requeued, lambda: False, pace).events()
    ]
    assert seen[:4] == [TaskState.FAILED, TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED]
    assert frames[-1] == task_stream.event("end", {"state": "succeeded"}, 0)
