"""A tiny line-protocol TCP server that stands in for a database in the service tests.

PING answers PONG and $GREETING; FETCH host port says whether this container can open that
address (an agent using the service as a way out); RESOLVE name whether it can look it up.
"""

import os
import socket
import threading
import time

PORT = int(os.environ.get("PORT", "7000"))


def answer(words: list[str]) -> str:
    if words[:1] == ["PING"]:
        return f"PONG {os.environ.get('GREETING', '')}".strip()
    if words[:1] == ["FETCH"] and len(words) == 3:
        try:
            socket.create_connection((words[1], int(words[2])), timeout=3).close()
        except OSError as exc:
            return f"CLOSED {exc}"
        return "OPEN"
    if words[:1] == ["RESOLVE"] and len(words) == 2:
        try:
            socket.getaddrinfo(words[1], 80)
        except OSError as exc:
            return f"UNRESOLVED {exc}"
        return "RESOLVED"
    return "ERROR unknown command"


def handle(conn: socket.socket) -> None:
    with conn:
        words = conn.makefile().readline().split()
        conn.sendall((answer(words) + "\n").encode())


def main() -> None:
    time.sleep(float(os.environ.get("START_DELAY", "0")))
    if os.environ.get("NEVER_READY"):
        print("this service never gets ready", flush=True)
        time.sleep(10**6)
    server = socket.create_server(("", PORT))
    print(f"listening on {PORT}", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


main()
