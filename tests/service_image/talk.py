"""Send one line to a service and print its answer: `python3 talk.py HOST PORT WORDS...`."""

import socket
import sys

host, port, words = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
with socket.create_connection((host, port), timeout=10) as conn:
    conn.sendall((" ".join(words) + "\n").encode())
    print(conn.makefile().readline().strip())
