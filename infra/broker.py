"""Apache Kafka in KRaft mode (one node, broker and controller), run from Maven Central jars."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from kafka.admin import KafkaAdminClient

from infra import console, processes, specs
from infra.errors import InstallError
from infra.layout import CACHE_DIR, INFRA_DIR, host_port
from infra.service import Port, Service

POM_DIR = INFRA_DIR / "kafka"
LOG4J_CONFIG = POM_DIR / "log4j2.xml"
CLASSPATH_FILE = CACHE_DIR / "kafka-classpath.txt"
HEAP = "512m"


def classpath() -> str:
    """The broker's classpath, resolved by Maven once and cached until the pom changes."""
    pom = POM_DIR / "pom.xml"
    if CLASSPATH_FILE.exists() and CLASSPATH_FILE.stat().st_mtime >= pom.stat().st_mtime:
        cached = CLASSPATH_FILE.read_text().strip()
        if cached and all(Path(jar).exists() for jar in cached.split(os.pathsep)):
            return cached
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InstallError("mvn not found: install Maven (Debian: apt-get install maven)")
    console.step("resolving Kafka's jars with Maven (once; cached in ~/.m2)")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed, so that two stacks starting at once never read half a file.
    partial = CLASSPATH_FILE.with_suffix(f".{os.getpid()}.tmp")
    result = subprocess.run(
        [mvn, "-q", "-B", "dependency:build-classpath", f"-Dmdep.outputFile={partial}"],
        cwd=POM_DIR,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not partial.exists():
        raise InstallError(f"mvn could not resolve {pom}:\n{result.stdout[-3000:]}")
    partial.replace(CLASSPATH_FILE)
    return CLASSPATH_FILE.read_text().strip()


def class_archive() -> Path:
    """The broker's class-data archive (AppCDS), one per classpath and JVM, shared by all stacks.

    Loading Kafka's classes from an archive roughly halves the CPU its start takes (5.0 -> 2.7 s
    measured on two busy cores). The first broker of a classpath writes the archive as it exits
    (see KafkaBroker.stopped); the JVM ignores, with a warning, an archive that does not fit.
    """
    java = os.path.realpath(shutil.which("java") or "java")
    jvm = f"{java}:{os.stat(java).st_mtime_ns}" if os.path.exists(java) else java
    key = hashlib.sha1(f"{classpath()}|{jvm}".encode()).hexdigest()[:12]
    return CACHE_DIR / f"kafka-classes-{key}.jsa"


def new_cluster_id() -> str:
    """A cluster id as Kafka makes them: 16 random bytes, URL-safe base64, no padding.

    Kafka never hands out one starting with '-', which its command-line tools would read as a flag.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def admin_client(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="consim-infra", request_timeout_ms=10000
    )


class KafkaBroker(Service):
    name = "kafka"
    start_timeout = 90.0
    # A controlled shutdown, and the first time also writing the class-data archive.
    stop_timeout = 60.0

    @property
    def port(self) -> Port:
        return Port(*host_port(self.config.kafka_bootstrap))

    @property
    def controller_port(self) -> Port:
        return Port(self.port.host, self.config.kafka_controller_port)

    @property
    def extra_ports(self) -> list[Port]:
        return [self.controller_port]

    @property
    def endpoint(self) -> str:
        return self.config.kafka_bootstrap

    @property
    def properties_file(self) -> Path:
        return self.layout.data("kafka") / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.layout.data("kafka") / "data"

    def marker(self) -> str:
        return str(self.properties_file)

    def install(self) -> None:
        if shutil.which("java") is None:
            raise InstallError("java not found: install a JDK 17 (Debian: openjdk-17-jre-headless)")
        classpath()

    def server_properties(self) -> str:
        host, port = self.port.host, self.port.number
        controller = self.controller_port.number
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{controller}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "4",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            # 50 partitions by default: fewer make the first consumer group start faster.
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # A lone local consumer should not wait 3 s for company before its first assignment.
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.retention.hours": "24",
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    @property
    def pending_archive(self) -> Path:
        return self.layout.data("kafka") / "classes.jsa"

    def _class_data_options(self, record: bool) -> list[str]:
        archive = class_archive()
        if archive.exists():
            return [f"-XX:SharedArchiveFile={archive}"]
        # CI runs on a fresh clone once: writing an archive only it would read is time lost.
        if record and not os.environ.get("CI"):
            # Quiet: the dump lists every class it skips, hundreds of lines of no interest.
            return [f"-XX:ArchiveClassesAtExit={self.pending_archive}", "-Xlog:cds*=error"]
        return []

    def _java(self, main_class: str, *args: str, record_classes: bool = False) -> list[str]:
        return [
            "java",
            *self._class_data_options(record_classes),
            f"-Xmx{HEAP}",
            f"-Xms{HEAP}",
            "-XX:+UseG1GC",
            # C1 only: on two shared cores C2's compiler threads slowed the start by ~1.5 s
            # (4.7 -> 3.2 s measured); a local broker never needs C2's peak throughput.
            "-XX:TieredStopAtLevel=1",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            classpath(),
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        console.step("formatting Kafka's storage (KRaft)")
        argv = self._java("kafka.tools.StorageTool", "format", "--ignore-formatted")
        argv += ["--cluster-id", new_cluster_id(), "--config", str(self.properties_file)]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise InstallError(f"Kafka's StorageTool failed:\n{result.stdout}{result.stderr}")

    def launch(self) -> None:
        self.properties_file.parent.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(self.server_properties())
        self._format_storage()
        argv = self._java("kafka.Kafka", str(self.properties_file), record_classes=True)
        processes.spawn(argv, self.pid_file, self.log_file)

    def stopped(self, cleanly: bool) -> None:
        # The JVM writes the archive while it exits; one that was killed may have left half.
        pending = self.pending_archive
        if not pending.exists():
            return
        final = class_archive()
        if cleanly and not final.exists():
            # Moved in beside the final name first: the state dir may be on another file system.
            arriving = final.with_suffix(f".{os.getpid()}.tmp")
            shutil.move(pending, arriving)
            arriving.replace(final)
            console.step(f"kept Kafka's class-data archive for faster starts: {final.name}")
        else:
            pending.unlink()

    def ready(self) -> bool:
        # The port opens before the broker has caught up with its own metadata log; ready means
        # it answers a metadata request.
        if not super().ready():
            return False
        try:
            admin = admin_client(self.endpoint)
        except Exception:
            return False
        try:
            admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            admin.close()

    def provision(self) -> None:
        admin = admin_client(self.endpoint)
        try:
            existing = {t["name"]: len(t["partitions"]) for t in admin.describe_topics()}
            missing = {}
            for topic in specs.topics(self.config):
                have = existing.get(topic.name)
                if have is None:
                    missing[topic.name] = {
                        "num_partitions": topic.partitions,
                        "replication_factor": 1,
                        "configs": topic.configs,
                    }
                elif have < topic.partitions:
                    admin.create_partitions({topic.name: topic.partitions})
                    console.step(f"topic {topic.name}: {have} -> {topic.partitions} partitions")
                elif have > topic.partitions:
                    console.warn(
                        f"topic {topic.name} has {have} partitions, the spec says "
                        f"{topic.partitions} (Kafka cannot shrink a topic)"
                    )
            if missing:
                admin.create_topics(missing, wait_for_metadata=True)
                console.step(f"created topics {', '.join(sorted(missing))}")
        finally:
            admin.close()
