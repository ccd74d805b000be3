"""The stack's checks before it starts a service, and what it tells the person at the terminal."""

from __future__ import annotations

import socket

import pytest
from consim.config import settings

from infra import ports
from infra.environment import shell_assignments
from infra.errors import PortTakenError
from infra.testrun import _isolate_environment, _pytest_argv

pytestmark = pytest.mark.unit


def test_a_listening_port_is_reported_with_its_number_and_service():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        with pytest.raises(PortTakenError) as taken:
            ports.ensure_free("kafka", "127.0.0.1", port)

    message = str(taken.value)
    assert f"port {port}" in message
    assert "kafka" in message
    assert "CONSIM_PORT_OFFSET" in message


def test_a_bound_udp_port_is_reported_too():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]

        with pytest.raises(PortTakenError, match=f"UDP port {port}"):
            ports.ensure_free("emulator", "127.0.0.1", port, proto="udp")


def test_a_free_port_passes():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    ports.ensure_free("dynalite", "127.0.0.1", port)
    assert not ports.answers("127.0.0.1", port)


def test_env_output_is_shell_safe():
    text = shell_assignments({"API_KEY": "a b'c", "API_URL": "http://127.0.0.1:3000"})

    assert text == "export API_KEY='a b'\"'\"'c'\nexport API_URL=http://127.0.0.1:3000\n"


def test_pytest_runs_tests_dir_unless_given_a_target():
    assert _pytest_argv(["-m", "integration"])[-3:] == ["tests", "-m", "integration"]
    assert _pytest_argv(["tests/unit", "-x"])[-2:] == ["tests/unit", "-x"]
    assert "tests" not in _pytest_argv(["tests/unit/test_infra_ports.py::test_a_free_port_passes"])


def test_the_test_stack_ignores_endpoints_exported_for_another_stack(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://consim:consim@127.0.0.1:5432/consim")
    monkeypatch.setenv("CONSIM_STATE_DIR", "/somewhere/precious")
    monkeypatch.setenv("CONSIM_PORT_OFFSET", "0")

    _isolate_environment()

    config = settings()
    assert config.postgres_port == 15432
    assert config.database_url.endswith(":15432/consim")
    assert config.state_dir.name == "stack-10000"
