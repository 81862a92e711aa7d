"""A PostgreSQL cluster in a folder, from Debian's packages: what `aduana stack up` starts for the production
stores, and what the integration tests start once per session.

Debian's `postgresql` package puts its server tools under /usr/lib/postgresql/VERSION/bin. The server refuses to
run as root, so as root the cluster's folder is handed to the `postgres` user and every tool runs as that user
(`runuser`); any other user runs them as itself. A root-owned home is closed to other users (0700), so as root the
cluster's files live in Debian's PostgreSQL folder (/var/lib/postgresql/aduana/<key of the folder>) and the folder
under the home is a link to them. The cluster listens on loopback only, with its socket in the
folder. Its one role (`aduana`) logs in with a password (SCRAM) when the cluster is given one, as `aduana stack up`
does: a loopback port is open to every local user, so the folder alone is no boundary. Without one (throwaway test
clusters) it trusts local connections.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from features.errors import UserError

ROLE = "aduana"
INSTALL_HINT = "install Debian's PostgreSQL server first: apt-get install -y postgresql"


def server_bin() -> Path:
    """The newest installed PostgreSQL server's tools (Debian's layout), or PG_BIN when set."""
    if given := os.environ.get("PG_BIN"):
        return Path(given)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise UserError(f"no PostgreSQL server found under /usr/lib/postgresql: {INSTALL_HINT}")
    return versions[-1].parent


def available() -> bool:
    try:
        server_bin()
    except UserError:
        return False
    return True


@dataclass(frozen=True)
class Cluster:
    """One cluster: its folder (data, socket and log inside) and its port."""

    folder: Path
    port: int
    password: str | None = None

    @property
    def place(self) -> Path:
        """Where the cluster's files are (the folder, or what it links to)."""
        return self.folder.resolve()

    @property
    def data(self) -> Path:
        return self.place / "data"

    @property
    def log(self) -> Path:
        return self.place / "postgres.log"

    def url(self, database: str = ROLE, driver: str = "") -> str:
        """A connection URL: `driver` "" for libpq/psycopg, "+asyncpg" (Prefect), "+psycopg" (SQLAlchemy)."""
        login = f"{ROLE}:{quote(self.password, safe='')}" if self.password else ROLE
        return f"postgresql{driver}://{login}@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return _run(self, "pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def start(self, timeout: float = 60.0) -> Cluster:
        """Initialise the cluster on first use, then start it (nothing if it runs)."""
        _make_place(self.folder)
        if not (self.data / "PG_VERSION").exists():
            shutil.rmtree(self.data, ignore_errors=True)  # a half-made cluster from an interrupted first start
            self._initdb()
        if self.running:
            return self
        options = f"-p {self.port} -k {self.place} -c listen_addresses=127.0.0.1 -c max_connections=200"
        _run(self, "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", str(int(timeout)),
             "start")
        return self

    def _initdb(self) -> None:
        """A new cluster: its role's password from a file only the server's user reads, removed at once."""
        if not self.password:
            _run(self, "initdb", "-D", str(self.data), "-A", "trust", "-U", ROLE, "-E", "UTF8", "--no-locale")
            return
        secret = self.place / "initdb-password"
        with os.fdopen(os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(self.password + "\n")
        try:
            if _as_root():
                _hand_over(self.place)
            _run(self, "initdb", "-D", str(self.data), "-A", "scram-sha-256", f"--pwfile={secret}", "-U", ROLE,
                 "-E", "UTF8", "--no-locale")
        finally:
            secret.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the cluster (fast shutdown: open sessions are ended, committed work is kept)."""
        if self.data.exists() and self.running:
            _run(self, "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def remove(self) -> None:
        """Stop the cluster and delete its files (and the link to them)."""
        self.stop()
        shutil.rmtree(self.place, ignore_errors=True)
        if self.folder.is_symlink():
            self.folder.unlink()

    def create_database(self, name: str) -> str:
        """Create a database (nothing if it exists); returns its psycopg URL."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as con:
            if not con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_root() -> bool:
    return os.geteuid() == 0


def _make_place(folder: Path) -> None:
    """The folder, made; as root, a link to a folder the postgres user owns and can reach."""
    if not _as_root():
        folder.mkdir(parents=True, exist_ok=True)
        return
    if not folder.is_symlink():
        key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
        physical = Path("/var/lib/postgresql/aduana") / key
        physical.mkdir(parents=True, exist_ok=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():
            folder.rmdir()  # an empty folder left by an earlier call (a non-empty one is an error: kept as it is)
        folder.symlink_to(physical, target_is_directory=True)
    _hand_over(folder.resolve())


def _hand_over(folder: Path) -> None:
    """As root, the cluster's folder belongs to the postgres user (the server refuses to run as root)."""
    user = pwd.getpwnam("postgres")
    for path in (folder, *folder.rglob("*")):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_uid != user.pw_uid:
                os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)


def _run(cluster: Cluster, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [str(server_bin() / tool), *args]
    if _as_root():
        command = ["runuser", "-u", "postgres", "--", *command]
    # Without the CLI watchdog's token: the server pg_ctl starts outlives the call (flows/orchestration/watchdog.py).
    env = {k: v for k, v in os.environ.items() if k != "ADUANA_CLI_RUN"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=cluster.place, stdin=subprocess.DEVNULL, env=env)
    if check and done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise UserError(f"PostgreSQL {tool} failed in {cluster.place}: {' / '.join(tail)} (log: {cluster.log})")
    return done


def wait_ready(cluster: Cluster, timeout: float = 30.0) -> None:
    """Until the cluster accepts connections."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(cluster.url("postgres"), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
