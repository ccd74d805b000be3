"""The command line: `invoke` runs one event; `serve` stops cleanly on SIGTERM, workers too."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from consim.config import REPO_ROOT
from fixtures.emulator.harness import TEMPLATE, free_port

pytestmark = pytest.mark.unit


def _run_invoke(function: str, event: dict, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator",
            "invoke",
            function,
            "-",
            "--template",
            str(TEMPLATE),
            "--parameter-overrides",
            f"RecordDir={tmp_path}",
        ],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_invoke_prints_the_result_and_exits_with_its_outcome(tmp_path):
    done = _run_invoke("echo-test", {"hello": "cli"}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["event"] == {"hello": "cli"}

    failed = _run_invoke("FailFunction", {}, tmp_path)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["errorType"] == "PaymentBroken"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent's reaping is missing.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_serve_stops_its_workers_on_sigterm(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "serve",
            "--template",
            str(TEMPLATE),
            "--parameter-overrides",
            f"RecordDir={tmp_path}",
            "ScheduleRate=rate(1 hour)",
        ],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        answer = None
        while answer is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/items/1", timeout=30) as r:
                    answer = json.loads(r.read())
            except OSError:
                time.sleep(0.3)
        assert answer is not None, "the emulator never answered"
        worker_pid = answer["pid"]
        assert _alive(worker_pid)

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert not _alive(worker_pid)
    finally:
        if server.poll() is None:
            server.kill()
