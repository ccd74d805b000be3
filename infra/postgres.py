"""PostgreSQL from Debian's packages, as a private cluster of this stack, owned by a non-root user.

initdb refuses to run as root, so when the CLI runs as root (CI does) every cluster command runs
as the `postgres` system user that Debian's package creates, through runuser.
"""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql
from yoyo import get_backend, read_migrations

from infra import console, processes
from infra.errors import InstallError, StackError
from infra.layout import INFRA_DIR
from infra.service import Port, Service

MIGRATIONS_DIR = INFRA_DIR / "migrations"
MIGRATIONS_TABLE = "_yoyo_migration"
OWNER = "postgres"
# Postgres reads this from the data directory; rewritten on every `up` so port changes apply.
# synchronous_commit=off: a commit returns before its WAL reaches the disk. A crash of the machine
# can lose the last fraction of a second of commits, never corrupts; fine for a local stack, and
# it makes small transactions several times faster on a shared 2-core box.
TUNING = """\
max_connections = 200
shared_buffers = 128MB
effective_cache_size = 1GB
work_mem = 4MB
synchronous_commit = off
fsync = on
max_wal_size = 1GB
checkpoint_timeout = 15min
log_min_duration_statement = 500
log_line_prefix = '%m [%p] %u@%d '
"""


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/postgres")
    if not found:
        return None
    return Path(max(found, key=lambda p: int(Path(p).parent.parent.name))).parent


def install() -> Path:
    found = bin_dir()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise InstallError("PostgreSQL is missing: run `sudo apt-get install -y postgresql`")
    console.step("installing PostgreSQL from Debian's packages (apt-get)")
    # No system-wide `main` cluster: this stack runs its own, and that one would take port 5432.
    # Debian's createcluster.conf reads the drop-in folder, so no packaged file is edited.
    dropin = Path("/etc/postgresql-common/createcluster.d/consim-no-main-cluster.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("create_main_cluster = false\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "postgresql"],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise InstallError(f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}{result.stderr}")
    found = bin_dir()
    if found is None:
        raise InstallError(
            "apt-get installed postgresql, yet no /usr/lib/postgresql/*/bin/postgres"
        )
    return found


def as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", OWNER, "--", *argv] if os.geteuid() == 0 else argv


def _owner_can_enter(path: Path) -> bool:
    if os.geteuid() != 0:
        return True
    probe = subprocess.run(as_owner(["test", "-x", str(path)]), cwd="/", capture_output=True)
    return probe.returncode == 0


class Postgres(Service):
    name = "postgres"
    start_timeout = 60.0

    @property
    def port(self) -> Port:
        return Port(self.config.postgres_host, self.config.postgres_port)

    @property
    def endpoint(self) -> str:
        return self.config.database_url

    @cached_property
    def root(self) -> Path:
        """The cluster's folder: in the state dir, unless the owner cannot reach it there.

        A clone under a folder closed to other users (/root, say) cannot hold a cluster run by
        `postgres`; the cluster then lives under /var/tmp, named after the state dir.
        """
        preferred = self.layout.data("postgres")
        if _owner_can_enter(self.layout.state_dir):
            return preferred
        digest = hashlib.sha1(str(self.layout.state_dir).encode()).hexdigest()[:12]
        return Path("/var/tmp/consim-postgres") / digest

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def marker(self) -> str:
        return str(self.data_dir)

    def pid(self) -> int | None:
        pid = processes.read_pid(self.data_dir / "postmaster.pid")
        return pid if pid is not None and processes.is_alive(pid, self.marker()) else None

    def install(self) -> None:
        self._bin = install()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        (self.data_dir / "consim.conf").write_text(self._config())
        self._link_log()

    def _run(self, argv: list[str], what: str) -> None:
        result = subprocess.run(
            as_owner(argv), cwd="/", capture_output=True, text=True, start_new_session=True
        )
        if result.returncode != 0:
            raise StackError(f"{what} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")

    def _initdb(self) -> None:
        console.step(f"creating a PostgreSQL cluster in {self.data_dir}")
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", f"{OWNER}:", str(self.root)], check=True)
        # Superuser by unix socket only (trust, the socket lives in the data dir); every TCP
        # login, the application's included, needs its password.
        argv = [str(self._bin / "initdb"), "-D", str(self.data_dir), "-U", "postgres"]
        argv += ["--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale"]
        self._run(argv, "initdb")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\ninclude_if_exists = 'consim.conf'\n")

    def _config(self) -> str:
        return TUNING + (
            f"listen_addresses = '{self.port.host}'\n"
            f"port = {self.port.number}\n"
            f"unix_socket_directories = '{self.data_dir}'\n"
        )

    def _link_log(self) -> None:
        # The server writes its log as the owner; the logs folder shows it beside the others.
        link = self.layout.log(self.name)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(self.log_file)

    def launch(self) -> None:
        pg_ctl = str(self._bin / "pg_ctl")
        argv = [pg_ctl, "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t"]
        argv += [str(int(self.start_timeout)), "start"]
        self._run(argv, "pg_ctl start")

    def down(self) -> bool:
        if self.pid() is None:
            return False
        pg_ctl = str((bin_dir() or Path("/usr/bin")) / "pg_ctl")
        self._run([pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "stop"], "pg_ctl stop")
        return True

    def provision(self) -> None:
        target = urlsplit(self.config.database_url)
        user, password = unquote(target.username or "consim"), unquote(target.password or "")
        database = target.path.lstrip("/") or user
        admin = psycopg.connect(
            host=str(self.data_dir), port=self.port.number, user="postgres", dbname="postgres",
            autocommit=True,
        )  # fmt: skip
        with admin:
            role = sql.Identifier(user)
            exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [user]).fetchone()
            verb = "ALTER" if exists else "CREATE"
            admin.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(password))
            )
            found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database])
            if found.fetchone() is None:
                admin.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), role)
                )
                console.step(f"created database {database} owned by {user}")
        migrate(self.config.database_url)


def migrate(database_url: str) -> int:
    """Apply the migrations in infra/migrations/ that the database has not seen; return how many."""
    _scheme, rest = database_url.split("://", 1)
    backend = get_backend(f"postgresql+psycopg://{rest}", migration_table=MIGRATIONS_TABLE)
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    if pending:
        console.step(f"applied {len(pending)} migration(s): {', '.join(m.id for m in pending)}")
    return len(pending)
