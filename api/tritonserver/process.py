"""The operating system's side of a server child process: ports, parent death, its group.

Kept apart from :mod:`api.tritonserver.launcher` (what Triton is started with and when it
is ready): these are plain POSIX matters that hold for any child server.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket


def port_free(address: str, port: int) -> bool:
    """True when ``port`` can be bound on ``address`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as Triton's own listeners use: TIME_WAIT leftovers do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def free_ports(count: int, address: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free a moment ago (the OS picks them)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind((address, 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def die_with_parent() -> None:
    """For ``preexec_fn``: the child gets SIGTERM when the thread that forked it dies.

    If our process dies without stopping the server, the kernel does, so no server is left
    holding the ports.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def kill_group(pgid: int) -> None:
    """SIGKILL to a whole process group, gone or not."""
    # Stubs that outlived their server would otherwise linger, holding shared memory.
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
