"""The sandbox's idle process: Gantry's own, which nothing in the container can take over.

A phase ends with nothing of it left running (`Sandbox.end_phase`): when the engine's process
list shows only the processes that were idle before the phase, the container need not be
restarted (about 0.3 s a phase), provided no command could have taken one of them over while
keeping its PID. The image's `sleep` under docker-init runs as the same user as the commands,
so a command can ptrace it, or write its memory through /proc, and run on as that PID; only the
engine's kernel confining ptrace (Yama, see runner/ptrace_scope.py) made skipping safe.

Gantry's idle process closes that whatever the kernel's settings: it is PID 1 of the container
and its first act is `prctl(PR_SET_DUMPABLE, 0)`. The kernel then lets only a holder of
CAP_SYS_PTRACE (dropped in every sandbox) attach to it, read or write its memory, or take its
file descriptors, whatever the uid (`__ptrace_may_access`). Then it blocks SIGCHLD and waits
for it, reaping every child it inherits, as an init must. Until it sleeps there, it is not
known to have made itself undumpable: `Sandbox` trusts it only in that state (`trusted`).

The program is the 105 bytes of x86-64 below, in a 281-byte static ELF built here, not taken
from the image (an image may be hostile). It reaches a container through a read-only volume
(`volume_name`) that Gantry fills once per engine through the archive API: no host path, so a
remote engine works too. Engines of other architectures keep docker-init and the image's
`sleep`, and the restart unless Yama confines ptrace.
"""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile
import threading
import weakref
from collections.abc import Sequence

import docker
from docker.models.containers import Container
from docker.types import Mount

# The program, instruction by instruction (GNU as, Intel syntax), with its bytes.
X86_64_PROGRAM: tuple[tuple[str, str], ...] = (
    ("b8 9d 00 00 00", "mov eax, 157        ; prctl"),
    ("bf 04 00 00 00", "mov edi, 4          ; PR_SET_DUMPABLE"),
    ("31 f6", "xor esi, esi        ; 0: nobody without CAP_SYS_PTRACE may trace us"),
    ("0f 05", "syscall"),
    ("48 85 c0", "test rax, rax"),
    ("75 4a", "jnz fail            ; never run on as a traceable idle"),
    ("68 00 00 01 00", "push 0x10000        ; a sigset of SIGCHLD (17), on the stack"),
    ("b8 0e 00 00 00", "mov eax, 14         ; rt_sigprocmask"),
    ("31 ff", "xor edi, edi        ; SIG_BLOCK: queued for rt_sigtimedwait"),
    ("48 89 e6", "mov rsi, rsp"),
    ("31 d2", "xor edx, edx"),
    ("41 ba 08 00 00 00", "mov r10d, 8"),
    ("0f 05", "syscall"),
    ("b8 3d 00 00 00", "reap: mov eax, 61   ; wait4"),
    ("bf ff ff ff ff", "mov edi, -1         ; any child"),
    ("31 f6", "xor esi, esi"),
    ("ba 01 00 00 00", "mov edx, 1          ; WNOHANG"),
    ("45 31 d2", "xor r10d, r10d"),
    ("0f 05", "syscall"),
    ("48 85 c0", "test rax, rax"),
    ("7f e5", "jg reap             ; reaped one: look for the next"),
    ("b8 80 00 00 00", "mov eax, 128        ; rt_sigtimedwait"),
    ("48 89 e7", "mov rdi, rsp        ; for SIGCHLD"),
    ("31 f6", "xor esi, esi"),
    ("31 d2", "xor edx, edx        ; no timeout"),
    ("41 ba 08 00 00 00", "mov r10d, 8"),
    ("0f 05", "syscall"),
    ("eb cf", "jmp reap"),
    ("b8 3c 00 00 00", "fail: mov eax, 60   ; exit"),
    ("bf 01 00 00 00", "mov edi, 1"),
    ("0f 05", "syscall"),
)
LOAD_ADDRESS = 0x400000
ELF_HEADER_SIZE, PROGRAM_HEADER_SIZE = 64, 56
PT_LOAD, PT_GNU_STACK = 1, 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4
# The engine's name (`docker info`'s Architecture) of each machine the program is written for.
ARCHITECTURES = ("x86_64", "amd64")

IDLE_DIR = "/.gantry-idle"
IDLE_PATH = f"{IDLE_DIR}/idle"
# How the engine's process list names it (`ps -o comm`): the file's name.
IDLE_COMM = "idle"
VOLUME_PREFIX = "gantry-idle-"
VOLUME_LABELS = {"gantry.managed": "1", "gantry.kind": "idle"}


def program_bytes(program: Sequence[tuple[str, str]] = X86_64_PROGRAM) -> bytes:
    """The machine code of a listing."""
    return bytes.fromhex(" ".join(code for code, _ in program))


def elf(code: bytes) -> bytes:
    """A static x86-64 executable of `code`: one read+execute segment, a non-executable stack."""
    headers = ELF_HEADER_SIZE + 2 * PROGRAM_HEADER_SIZE
    size = headers + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)  # 64-bit, little-endian, version 1
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        2,  # ET_EXEC
        0x3E,  # EM_X86_64
        1,
        LOAD_ADDRESS + headers,  # the entry point: the code, right after the headers
        ELF_HEADER_SIZE,  # program headers
        0,  # no section headers
        0,
        ELF_HEADER_SIZE,
        PROGRAM_HEADER_SIZE,
        2,
        0,
        0,
        0,
    )
    load = struct.pack(
        "<IIQQQQQQ", PT_LOAD, PF_R | PF_X, 0, LOAD_ADDRESS, LOAD_ADDRESS, size, size, 0x1000
    )
    stack = struct.pack("<IIQQQQQQ", PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0, 0, 16)
    return header + load + stack + code


IDLE_BINARY = elf(program_bytes())
VOLUME_NAME = VOLUME_PREFIX + hashlib.sha256(IDLE_BINARY).hexdigest()[:16]


def supported(architecture: str) -> bool:
    """Whether the idle program runs on an engine of this architecture."""
    return architecture in ARCHITECTURES


def mount(volume: str) -> Mount:
    """The idle volume in a sandbox: read-only, and never filled from the image's files."""
    return Mount(IDLE_DIR, volume, type="volume", read_only=True, no_copy=True)


def container_kwargs() -> dict[str, object]:
    """The docker SDK arguments that make the idle program a sandbox's PID 1 (no docker-init:
    it would be a second idle process, one a command could take over)."""
    return {"entrypoint": [IDLE_PATH], "command": [], "init": False}


def trusted(rows: Sequence[Sequence[str]]) -> bool:
    """Whether an engine process list (`ps -o pid,stat,comm` rows) is the idle program alone,
    asleep: it sleeps only after making itself undumpable."""
    return len(rows) == 1 and rows[0][1].startswith("S") and rows[0][2] == IDLE_COMM


def archive(binary: bytes = IDLE_BINARY) -> bytes:
    """A tar of the idle program, for the volume's directory: root's, mode 0555."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(IDLE_PATH.rsplit("/", 1)[1])
        info.size, info.mode, info.uid, info.gid = len(binary), 0o555, 0, 0
        tar.addfile(info, io.BytesIO(binary))
    return buffer.getvalue()


def read_archive(data: bytes) -> bytes | None:
    """The idle program's bytes in an archive from the engine (None: not a regular file)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        if member is None or not member.isfile() or member.mode & 0o777 != 0o555:
            return None
        extracted = tar.extractfile(member)
        return extracted.read() if extracted is not None else None


def fill(client: docker.DockerClient, image: str, volume: str = VOLUME_NAME) -> None:
    """Make sure the engine's idle volume holds the idle program (blocking).

    Written through a container that is created, never started, with the volume mounted
    (`image` is only a root filesystem to create it from: nothing of it runs)."""
    try:
        client.volumes.get(volume)
    except docker.errors.NotFound:
        client.volumes.create(volume, labels=dict(VOLUME_LABELS))
    writable = Mount(IDLE_DIR, volume, type="volume", no_copy=True)
    holder = client.containers.create(
        image, entrypoint=[IDLE_PATH], command=[], mounts=[writable], network_disabled=True,
        labels=dict(VOLUME_LABELS),
    )  # fmt: skip
    try:
        if _held(holder) != IDLE_BINARY:
            holder.put_archive(IDLE_DIR, archive())
            if _held(holder) != IDLE_BINARY:
                raise docker.errors.DockerException(f"could not write the idle program to {volume}")
    finally:
        holder.remove(force=True, v=False)


def _exists(client: docker.DockerClient, volume: str) -> bool:
    """Whether the engine has the volume."""
    try:
        client.api.inspect_volume(volume)
    except docker.errors.NotFound:
        return False
    return True


def _held(holder: Container) -> bytes | None:
    """What the volume holds at the idle program's path."""
    try:
        chunks, _ = holder.get_archive(IDLE_PATH)
    except docker.errors.NotFound:
        return None
    return read_archive(b"".join(chunks))


class IdleVolumes:
    """One idle volume per engine client, checked or filled once (None: the engine's machine
    is one the program is not written for)."""

    def __init__(self, name: str = VOLUME_NAME) -> None:
        self.name = name
        self._known: weakref.WeakKeyDictionary[docker.DockerClient, str | None] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def known(self, client: docker.DockerClient) -> tuple[bool, str | None]:
        """(whether the engine was asked, its answer) without asking it."""
        with self._lock:
            return client in self._known, self._known.get(client)

    def volume(self, client: docker.DockerClient, image: str) -> str | None:
        """The engine's idle volume, filled; None when unsupported (blocking). A volume known
        filled is looked up again (one engine call): were it pruned, the engine would mount an
        empty one of that name, and the container would not start."""
        asked, answer = self.known(client)
        if asked and (answer is None or _exists(client, answer)):
            return answer
        architecture = str(client.info().get("Architecture", ""))
        answer = self.name if supported(architecture) else None
        if answer is not None:
            fill(client, image, answer)
        with self._lock:
            self._known[client] = answer
        return answer
