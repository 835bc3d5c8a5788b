"""The model gateway's cost per request, next to calling the model stand-in directly.

Run: `.venv/bin/python -m benchmarks.gateway [--requests 1000] [--concurrency 20]`

Two servers run as their own processes: the model stand-in (`forge.models`, streaming the
Responses API) and the gateway in front of it. This process generates load: batches of
`concurrency` streaming requests, alternating direct and through-the-gateway batches so both
see the same machine. Printed: latency and time to first streamed byte (median, p99) of each,
the gateway's added milliseconds and ratios measured in this run, and the gateway process's
resident memory at the start, every 200 requests and at the end (it should stay flat).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from forge.localnet import free_port

PYTHON = sys.executable
KEY = "sk-bench-real-key"
GATEWAY_SERVER = """
import asyncio, sys
from gateway import Budget, ModelGateway, Providers, Upstream
from gateway.connections import HeadLimits
from gateway.ledger import Pacing
async def main():
    upstream, port = sys.argv[1], int(sys.argv[2])
    providers = Providers(Upstream(upstream + "/v1", sys.argv[3]), Upstream(upstream, sys.argv[3]))
    # One task carries all the load here: no per-task or per-address caps in the way.
    limits, pacing = HeadLimits(connections=10**4, per_address=10**4), Pacing(in_flight=10**4)
    gateway = ModelGateway(providers, Budget(10**9, 10**15, 10**9), limits=limits, pacing=pacing)
    await gateway.start("127.0.0.1", port)
    print("token", gateway.open_task("bench", Budget(10**9, 10**15, 10**9)), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        usage = gateway.close_task("bench")
        print("usage", usage.summary(), "exchanges kept", len(usage.exchanges), flush=True)
        await gateway.stop()
try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
"""
BODY = {
    "model": "bench-model",
    "stream": True,
    "instructions": "You are a benchmark.",
    "input": [{"role": "user", "content": [{"type": "input_text", "text": "say hi"}]}],
}


@contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[str]]:
    """A server process, stopped at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    with log.open("w") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def wait_listening(port: int, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        await asyncio.sleep(0.05)
    raise SystemExit(f"port {port} did not open; see {log}:\n{log.read_text()[-2000:]}")


async def wait_token(log: Path, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("token "):
                return line.split()[1]
        await asyncio.sleep(0.05)
    raise SystemExit(f"the gateway did not start; see {log}:\n{log.read_text()[-2000:]}")


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def one(session: aiohttp.ClientSession, url: str, token: str) -> tuple[float, float]:
    """Total latency and time to the first streamed byte, in ms."""
    start = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    async with session.post(url, json=BODY, headers=headers) as response:
        if response.status != 200:
            raise SystemExit(f"{url} answered {response.status}: {await response.text()}")
        await response.content.readany()
        first = time.perf_counter()
        await response.read()
    end = time.perf_counter()
    return (end - start) * 1000, (first - start) * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(requests: int, concurrency: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gantry-bench-gateway-"))
    model_port, gateway_port = free_port(), free_port()
    model_log, gateway_log = tmp / "model.log", tmp / "gateway.log"
    model_cmd = [PYTHON, "-m", "forge.models", "--port", str(model_port), "--script", "text"]
    upstream = f"http://127.0.0.1:{model_port}"
    gateway_cmd = [PYTHON, "-c", GATEWAY_SERVER, upstream, str(gateway_port), KEY]
    with process(model_cmd, model_log), process(gateway_cmd, gateway_log) as gateway:
        await wait_listening(model_port, model_log)
        token = await wait_token(gateway_log)
        await wait_listening(gateway_port, gateway_log)
        targets = {
            "direct": f"{upstream}/v1/responses",
            "gateway": f"http://127.0.0.1:{gateway_port}/openai/v1/responses",
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        connector = aiohttp.TCPConnector(limit=concurrency * 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            for url in targets.values():  # warm-up: connections, imports, caches
                await asyncio.gather(*(one(session, url, token) for _ in range(concurrency * 5)))
            rss = [(0, rss_kib(gateway.pid))]
            done = 0
            while done < requests:
                for name, url in targets.items():
                    batch = [one(session, url, token) for _ in range(concurrency)]
                    results[name] += await asyncio.gather(*batch)
                done += concurrency
                if done % 200 == 0 or done >= requests:
                    rss.append((done, rss_kib(gateway.pid)))
    report(results, rss, concurrency)
    print(f"\ngateway log: {gateway_log.read_text().strip().splitlines()[-1]}")
    print(f"logs in {tmp}")


def report(
    results: dict[str, list[tuple[float, float]]], rss: list[tuple[int, int]], concurrency: int
) -> None:
    print(f"\n{len(results['gateway'])} streaming requests per target, {concurrency} concurrent")
    print(f"{'target':<10} {'p50 ms':>8} {'p99 ms':>8} {'TTFB p50':>9} {'TTFB p99':>9}")
    stats = {}
    for name, values in results.items():
        total, first = [v[0] for v in values], [v[1] for v in values]
        stats[name] = (
            statistics.median(total),
            pct(total, 0.99),
            statistics.median(first),
            pct(first, 0.99),
        )
        print(f"{name:<10} " + " ".join(f"{v:>8.2f}" for v in stats[name]))
    direct, gw = stats["direct"], stats["gateway"]
    print(
        f"\ngateway adds {gw[0] - direct[0]:.2f} ms at the median, {gw[1] - direct[1]:.2f} ms "
        f"at p99 (ratios {gw[0] / direct[0]:.2f}x, {gw[1] / direct[1]:.2f}x); first byte "
        f"+{gw[2] - direct[2]:.2f} ms median, +{gw[3] - direct[3]:.2f} ms p99"
    )
    steps = ", ".join(f"{n}: {kib / 1024:.1f}" for n, kib in rss)
    start, end = rss[0][1], rss[-1][1]
    print(f"gateway RSS MiB after n requests: {steps}")
    print(
        f"gateway RSS start {start / 1024:.1f} MiB, end {end / 1024:.1f} MiB "
        f"({(end - start) / 1024:+.1f} MiB over {rss[-1][0]} requests)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.concurrency))


if __name__ == "__main__":
    main()
