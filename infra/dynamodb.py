"""dynalite (npm, pinned by infra/dynalite/package-lock.json) for the DynamoDB API."""

from __future__ import annotations

import shutil
import subprocess

import boto3
from botocore.config import Config

from infra import console, processes, specs
from infra.errors import InstallError
from infra.layout import INFRA_DIR, host_port
from infra.service import Port, Service

PACKAGE_DIR = INFRA_DIR / "dynalite"
CLI = PACKAGE_DIR / "node_modules" / "dynalite" / "cli.js"
# dynalite's CLI behind a guard against clients that hang up mid-request (see the file).
SERVE = PACKAGE_DIR / "serve.js"


def client(endpoint: str, region: str):
    """A DynamoDB client for a local endpoint: dummy credentials, few retries, short timeouts."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=10),
    )


class Dynalite(Service):
    name = "dynalite"
    start_timeout = 30.0

    @property
    def port(self) -> Port:
        return Port(*host_port(self.config.dynamodb_endpoint))

    @property
    def endpoint(self) -> str:
        return self.config.dynamodb_endpoint

    def marker(self) -> str:
        return str(self.layout.data("dynalite"))

    def install(self) -> None:
        if CLI.exists():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise InstallError(
                "npm not found: install Node.js 20 (Debian: apt-get install nodejs npm)"
            )
        console.step("installing dynalite with `npm ci` (pinned by package-lock.json)")
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PACKAGE_DIR,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0 or not CLI.exists():
            raise InstallError(f"npm ci in {PACKAGE_DIR} failed:\n{result.stdout}{result.stderr}")

    def launch(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise InstallError("node not found: install Node.js 20")
        data = self.layout.data("dynalite")
        data.mkdir(parents=True, exist_ok=True)
        # Tables go ACTIVE at once: nothing waits out the 500 ms CREATING state per table.
        argv = [node, str(SERVE), "--host", self.port.host, "--port", str(self.port.number)]
        argv += ["--path", str(data), "--createTableMs", "0", "--deleteTableMs", "0"]
        argv += ["--updateTableMs", "0"]
        processes.spawn(argv, self.pid_file, self.log_file)

    def provision(self) -> None:
        dynamodb = client(self.endpoint, self.config.aws_region)
        existing: set[str] = set()
        for page in dynamodb.get_paginator("list_tables").paginate():
            existing.update(page["TableNames"])
        for table in specs.tables(self.config):
            if table.physical_name in existing:
                continue
            dynamodb.create_table(**table.create_request())
            dynamodb.get_waiter("table_exists").wait(
                TableName=table.physical_name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50}
            )
            console.step(f"created table {table.physical_name}")
