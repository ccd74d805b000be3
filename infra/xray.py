"""moto's server, standing in for the X-Ray API (the trace store of the native stack)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from infra import processes
from infra.errors import InstallError
from infra.layout import host_port
from infra.service import Port, Service


class MotoServer(Service):
    name = "moto"
    start_timeout = 60.0

    @property
    def port(self) -> Port:
        return Port(*host_port(self.config.xray_endpoint))

    @property
    def endpoint(self) -> str:
        return self.config.xray_endpoint

    def marker(self) -> str:
        return f"-p {self.port.number}"

    def _executable(self) -> str:
        beside_python = Path(sys.executable).with_name("moto_server")
        found = str(beside_python) if beside_python.exists() else shutil.which("moto_server")
        if found is None:
            raise InstallError(
                "moto_server not found: run `make venv` (moto[server] is a dev tool)"
            )
        return found

    def launch(self) -> None:
        argv = [self._executable(), "-H", self.port.host, "-p", str(self.port.number)]
        processes.spawn(argv, self.pid_file, self.log_file)
