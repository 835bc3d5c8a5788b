"""The README's first command: Gantry end to end on one machine, against the stand-in.

Starts the GitHub stand-in and `gantry serve`, makes a sample repository with an AGENTS.md
and a `.github/gantry.yml`, posts a signed `@gantry` comment on an issue, waits for the pull
request and prints it: title, body (with the check table) and diff.

With a Docker engine the sample's agent is the real Codex CLI (the `codex` preset, in the
agents image), driven by the model stand-in through Gantry's model gateway: no key, no network.
Without one (`EXECUTOR=local`) it is a tiny script in the sample repository.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from forge import git_repo
from forge.localnet import answers, free_port
from forge.model_script import Script
from forge.models import ModelStandIn
from forge.server import Forge
from runner.engine import EngineUnavailableError, docker_version
from runner.local_executor import WARNING as LOCAL_WARNING

SECRET = "demo-webhook-secret"  # noqa: S105 (a throw-away secret for the local demo)
OWNER, REPO, USER = "demo", "hello", "octocat"
REQUEST = "@gantry add a farewell function next to greet, with a test"
AGENT = '''\
"""A stand-in agent: reads the request and edits the code, like a real one would."""
import json, os, pathlib
task = json.loads(pathlib.Path(os.environ["GANTRY_TASK_FILE"]).read_text())
print("agent: asked by", task["requester"], "to:", os.environ["GANTRY_PROMPT"])
code = pathlib.Path("hello.py")
code.write_text(code.read_text() + "\\n\\ndef farewell(name):\\n    return f'Goodbye, {name}!'\\n")
tests = pathlib.Path("test_hello.py")
tests.write_text(tests.read_text() + (
    "\\n\\nclass FarewellTest(unittest.TestCase):\\n"
    "    def test_farewell(self):\\n"
    "        self.assertEqual(hello.farewell('Ada'), 'Goodbye, Ada!')\\n"))
'''
FILES = {
    "README.md": "# hello\n\nA sample repository for the Gantry demo.\n",
    ".gitignore": "__pycache__/\n",
    "hello.py": "def greet(name):\n    return f'Hello, {name}!'\n",
    "test_hello.py": textwrap.dedent(
        """\
        import unittest

        import hello


        class GreetTest(unittest.TestCase):
            def test_greet(self):
                self.assertEqual(hello.greet('Ada'), 'Hello, Ada!')
        """
    ),
    "AGENTS.md": textwrap.dedent(
        """\
        # Working on hello

        ## Testing

        Run the unit tests from the repository root:

        ```sh
        python3 -m unittest -v
        ```
        """
    ),
    ".gantry/agent.py": AGENT,
}


FAREWELL = (
    "def greet(name):\n    return f'Hello, {name}!'\n\n\n"
    "def farewell(name):\n    return f'Goodbye, {name}!'\n"
)
FAREWELL_TEST = (
    "\n\nclass FarewellTest(unittest.TestCase):\n"
    "    def test_farewell(self):\n"
    "        self.assertEqual(hello.farewell('Ada'), 'Goodbye, Ada!')\n"
)
# What the model stand-in's scripted turn does: rewrite hello.py, then append the test.
MODEL_SCRIPT = Script(
    path="hello.py",
    content=FAREWELL,
    then=f"printf '%s' {shlex.quote(FAREWELL_TEST)} >> test_hello.py",
    answer="Added farewell() next to greet(), with a test.",
)
DEMO_KEY = "sk-demo-operator-key"


def config(image: str, preset: bool) -> str:
    agent = (
        "{preset: codex, model: gpt-5-codex}" if preset else "{command: python3 .gantry/agent.py}"
    )
    return textwrap.dedent(
        f"""\
        image: {image}
        agent: {agent}
        network: {{setup: off, agent: off}}
        resources: {{cpus: 1, memory: 2g, pids: 512}}
        pull_request: {{labels: [gantry, demo]}}
        """
    )


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def make_sample(root: Path, image: str, preset: bool) -> Path:
    source = root / "sample"
    for name, text in {**FILES, ".github/gantry.yml": config(image, preset)}.items():
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return source


def executor() -> str:
    """Docker when an engine answers; otherwise the local executor, and say so loudly."""
    try:
        docker_version(timeout=5)
    except EngineUnavailableError:
        print("\n" + "!" * 78 + f"\nNo Docker engine answers. {LOCAL_WARNING}\n" + "!" * 78)
        return "local"
    return "docker"


def start_gantry(
    forge: Forge,
    app_id: int,
    key: Path,
    data: Path,
    port: int,
    image: str,
    run: tuple[str, str],
) -> subprocess.Popen[bytes]:
    """`gantry serve` with the stand-ins: (executor, model stand-in URL) in `run`."""
    mode, model = run
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")} | {
        "GANTRY_OPENAI_BASE_URL": f"{model}/v1",
        "GANTRY_OPENAI_API_KEY": DEMO_KEY,
        "GANTRY_GITHUB_WEBHOOK_SECRET": SECRET,
        "GANTRY_GITHUB_APP_ID": str(app_id),
        "GANTRY_GITHUB_PRIVATE_KEY_PATH": str(key),
        "GANTRY_GITHUB_API_URL": forge.api_url,
        "GANTRY_DATA_DIR": str(data),
        "GANTRY_DEFAULT_IMAGE": image,
        "GANTRY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "GANTRY_EXECUTOR": mode,
    }
    command = [sys.executable, "-m", "gantry", "serve", "--port", str(port)]
    return subprocess.Popen(command, env=env, stdout=sys.stdout, stderr=sys.stderr)


async def wait_ready(url: str, seconds: float = 60) -> None:
    if not await answers(url, seconds):
        raise SystemExit(f"gantry serve did not answer at {url}")


async def wait_for_pull(forge: Forge, issue: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        bot = [c for c in forge.comments(OWNER, REPO, issue) if c["user"] == "gantry[bot]"]
        # The pull request, and the task's final report on it (its 🚀 comment).
        if forge.pulls(OWNER, REPO) and bot and "🚀" in bot[-1]["body"]:
            return
        if bot and ("Failed" in bot[-1]["body"] or "changed nothing" in bot[-1]["body"]):
            print(bot[-1]["body"])
            raise SystemExit("the task did not produce a pull request")
        await asyncio.sleep(0.5)
    raise SystemExit(f"no pull request after {seconds:.0f}s")


async def show(forge: Forge, issue: int) -> None:
    [pull] = forge.pulls(OWNER, REPO)
    heads = await forge.branches(OWNER, REPO)
    bare = forge.repo(OWNER, REPO).path
    _, diff = await git_repo.git(
        bare, "diff", "--stat", "--patch", f"{heads['main']}..{heads[pull.head]}"
    )
    say(f"Pull request #{pull.issue.number}: {pull.issue.title}  ({pull.head} → {pull.base})")
    print(pull.issue.body)
    say("Its diff")
    print(diff.decode(errors="replace"))
    say(f"The progress comment on issue #{issue}")
    bot = [c for c in forge.comments(OWNER, REPO, issue) if c["user"] == "gantry[bot]"]
    print(bot[-1]["body"] if bot else "(none)")


async def demo(image: str, agents_image: str, seconds: float, work: Path | None = None) -> None:
    """The demo in `work` (a fresh temporary directory unless given)."""
    work = work or Path(tempfile.mkdtemp(prefix="gantry-demo-"))
    mode = executor()
    preset = mode == "docker"
    forge = Forge(work / "forge")
    await forge.start()
    model = ModelStandIn(MODEL_SCRIPT, expected_key=DEMO_KEY)
    await model.start()
    say(f"GitHub stand-in at {forge.base_url} (REST under {forge.api_url})")
    if preset:
        say(f"Model stand-in at {model.url()}: the agent is the real Codex CLI ({agents_image})")
        image = agents_image
    await forge.create_repo(OWNER, REPO, make_sample(work, image, preset))
    creds = forge.register_app("gantry")
    installation = forge.install(creds.app_id, OWNER, [REPO])
    forge.set_permission(OWNER, REPO, USER, "write")
    issue = forge.create_issue(OWNER, REPO, "Say goodbye too", "greet has no counterpart.", USER)
    key = work / "app.pem"
    key.write_text(creds.private_key_pem)
    key.chmod(0o600)
    port = free_port()
    say(f"gantry serve on port {port} (App id {creds.app_id}, data in {work / 'data'})")
    gantry = start_gantry(forge, creds.app_id, key, work / "data", port, image, (mode, model.url()))
    try:
        await wait_ready(f"http://127.0.0.1:{port}/healthz")
        say(f'{USER} comments on issue #{issue.number}: "{REQUEST}"')
        comment = forge.add_comment(OWNER, REPO, issue.number, REQUEST, USER)
        status = await forge.send_webhook(
            f"http://127.0.0.1:{port}/webhook",
            SECRET,
            "issue_comment",
            "created",
            owner=OWNER,
            repo=REPO,
            installation_id=installation,
            sender=USER,
            body=REQUEST,
            number=issue.number,
            comment_id=comment,
        )
        print(f"signed delivery answered {status}")
        await wait_for_pull(forge, issue.number, seconds)
        await show(forge, issue.number)
        if preset:
            asked = model.model_requests()
            keys = {r.api_key for r in asked} == {DEMO_KEY}
            say(
                f"The model stand-in answered {len(asked)} request(s) from Codex, each carrying "
                f"the operator's key ({'yes' if keys else 'NO'}); only the gateway held it"
            )
    finally:
        gantry.terminate()
        # Off the loop: the stand-ins run on it and must answer while Gantry shuts down.
        await asyncio.to_thread(gantry.wait, 30)
        await model.close()
        await forge.close()
    violations = forge.take_violations()
    if violations:
        raise SystemExit(f"Gantry made requests GitHub's API would refuse: {violations}")
    say(f"Done. Everything is under {work}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default="gantry-test-base:bookworm")
    parser.add_argument("--agents-image", default="gantry-agents:ci")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--work", type=Path, help="where everything goes (default: a temp dir)")
    args = parser.parse_args()
    asyncio.run(demo(args.image, args.agents_image, args.timeout, args.work))


if __name__ == "__main__":
    main()
