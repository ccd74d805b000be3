"""Background processes that outlive the CLI: started detached, found again by pid file, stopped.

Each service runs in its own session (process group), so stopping it also stops what it forked
(the emulator's workers), and Ctrl-C at the terminal reaches the CLI, not the services.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def is_alive(pid: int, marker: str = "") -> bool:
    """Whether pid is a live (not zombie) process whose command line contains marker.

    The marker guards against a stale pid file whose number the kernel gave to someone else.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    if state in ("Z", "X"):
        return False
    # Just after exec the kernel can show an empty command line for a moment: still ours.
    return cmdline == "" or marker in cmdline


def spawn(
    argv: Sequence[str],
    pid_file: Path,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start argv detached, its output appended to log_file, and record its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        shown = " ".join(a if len(a) < 200 else f"<{len(a)} chars>" for a in argv)
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {shown}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    pid_file.write_text(f"{process.pid}\n")
    return process.pid


def stop(pid: int, timeout: float = 20.0) -> bool:
    """SIGTERM pid's process group, SIGKILL what is left after timeout.

    True when everything had exited by itself, False when it had to be killed (or was gone).
    """
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return False
    group = pgid == pid

    def signal_it(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    def gone() -> bool:
        _reap(pid)
        if not group:
            return not is_alive(pid)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        return False

    signal_it(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while not gone():
        if time.monotonic() >= deadline:
            signal_it(signal.SIGKILL)
            return False
        time.sleep(0.1)
    return True


def _reap(pid: int) -> None:
    # Only our own children need reaping (within `infra test`); for others waitpid just fails.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
