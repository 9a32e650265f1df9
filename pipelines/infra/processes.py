"""What the local servers share: progress messages, Java, ports, logs, child processes.

Every server this package starts (Neo4j, a Flink JobManager and TaskManager, a Beam
worker pool) is a child process in its own process group that dies with its parent
(``PR_SET_PDEATHSIG`` on Linux), is stopped by signalling that group, and explains a
failed start with the tail of its logs.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Dict

LOG_TAIL_LINES = 30

log = logging.getLogger("pipelines.infra")


class InfraError(RuntimeError):
    """A local server cannot be fetched, started or reached; the message says what to do."""


def say(message: str, *args: object) -> None:
    """Progress to stderr: through ``logging`` when the program set it up, else printed."""
    if logging.getLogger().handlers or log.handlers:
        log.info(message, *args)
    else:
        print(message % args, file=sys.stderr, flush=True)


_java_versions: Dict[str, int] = {}


def check_java(min_major: int, needed_by: str, error: type = InfraError) -> str:
    """Return the ``java`` on PATH, raising ``error`` unless it is Java ``min_major``+.

    ``needed_by`` names what needs it ("Neo4j 5.26.30", "Flink 1.19") in the message.
    """
    java = shutil.which("java")
    if java is None:
        raise error(f"Java is not on PATH; {needed_by} needs Java {min_major} "
                    "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless)")
    if java not in _java_versions:
        try:
            out = subprocess.run([java, "-version"], stdin=subprocess.DEVNULL,
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as failure:
            raise error(f"could not run '{java} -version': {failure}") from failure
        text = out.stderr + out.stdout
        match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
        if not match:
            raise error(f"could not read the Java version from '{java} -version': {text.strip()!r}")
        major = int(match.group(1))
        if major == 1 and match.group(2):  # "1.8.0_402" is Java 8
            major = int(match.group(2))
        _java_versions[java] = major
    major = _java_versions[java]
    if major < min_major:
        raise error(f"{java} is Java {major}; {needed_by} needs Java {min_major} (install "
                    "Java 17, e.g. apt-get install openjdk-17-jre-headless, and put it first "
                    "on PATH)")
    return java


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could listen on ``host:port`` now.

    SO_REUSEADDR is set as servers set it, so connections lingering in TIME_WAIT do not
    count as "taken"; a listening socket still does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as failure:
            if failure.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; else IANA's)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, chosen at random just below the ephemeral range.

    Why not ``bind(port 0)``: that hands out a port from the range every outgoing
    connection also draws from, and a server binds seconds after launch, so on a busy
    machine (Beam workers, drivers) a client socket can take it in between. Below the
    range only another server can.
    """
    low, _ = _ephemeral_ports()
    first = max(1024, low - 12000)
    for _ in range(200):
        port = secrets.randbelow(low - first) + first if low > first else 0
        if port and port_is_free(port, host):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_from(path: Path, offset: int) -> str:
    """The text of ``path`` after byte ``offset`` ("" if it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``path`` ("" if it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except OSError:
        return ""


# libc is loaded here, in the parent: the child may only call into it between fork and exec.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Ask Linux to SIGTERM the child if the process that started it dies (even SIGKILL).

    Note: the signal is tied to the starting *thread*; start from a thread that lives as
    long as the child should (the main thread, normally).
    """
    if _LIBC is not None:
        _LIBC.prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG


#: ``preexec_fn`` for children that must not outlive this process (None where unsupported).
DIE_WITH_PARENT = _die_with_parent if _LIBC is not None else None


def signal_group(pid: int, signum: int) -> None:
    """Send ``signum`` to the process group led by ``pid`` (a child started with
    ``start_new_session=True``); a group that is gone already is fine."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
