"""The emulator (emulator/, `python -m emulator serve`): the API gateway and the functions."""

from __future__ import annotations

import os
import sys

from consim.config import REPO_ROOT

from infra import processes
from infra.environment import stack_env
from infra.layout import host_port
from infra.service import Port, Service


def emulator_present() -> bool:
    return (REPO_ROOT / "emulator" / "__main__.py").exists()


class Emulator(Service):
    name = "emulator"
    start_timeout = 90.0

    @property
    def port(self) -> Port:
        return Port(self.config.gateway_host, self.config.gateway_port)

    @property
    def extra_ports(self) -> list[Port]:
        # The emulator also receives X-Ray segments on UDP, as the daemon would.
        return [Port(*host_port(self.config.xray_daemon_address), proto="udp")]

    @property
    def endpoint(self) -> str:
        return self.config.api_url

    def marker(self) -> str:
        return "emulator"

    def launch(self) -> None:
        env = {**os.environ, **stack_env(self.config, self.layout), "PYTHONUNBUFFERED": "1"}
        # One warm worker per function from the start: a cold start costs seconds on two cores,
        # and the first payments of a demo or a test should not pay it (EMULATOR_PREWARM=0 to
        # see cold starts as Lambda users do).
        env.setdefault("EMULATOR_PREWARM", "1")
        # A subsegment per SQL statement cost +24..49 ms per POST on two cores
        # (benchmarks/tracing_cost.py); the named SQL steps (append, read_stream, ...) stay in
        # every trace. CONSIM_TRACE_SQL_STATEMENTS=true brings the statements back.
        env.setdefault("CONSIM_TRACE_SQL_STATEMENTS", "false")
        argv = [sys.executable, "-m", "emulator", "serve"]
        processes.spawn(argv, self.pid_file, self.log_file, env=env, cwd=REPO_ROOT)
