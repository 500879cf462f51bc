"""Fresh databases and a real gunicorn server on loopback, for live tests and benchmarks."""

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa

from orchestrator import migrate
from orchestrator.db import make_engine, make_sessionmaker, unit_of_work
from orchestrator.services import keys

PG_SERVER = os.environ.get(
    "QUORUM_TEST_POSTGRES_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
ROOT = Path(__file__).resolve().parents[2]


def create_pg_database(prefix: str = "quorum_test") -> tuple[str, Callable[[], None]]:
    """Create an empty PostgreSQL database; return its URL and a function that drops it."""
    server = sa.engine.make_url(PG_SERVER)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception:
        admin.dispose()
        raise

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return server.set(database=name).render_as_string(hide_password=False), drop


@contextlib.contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """Yield the URL of a new, migrated database on `backend`; drop it afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/quorum.db"
            migrate.upgrade(url)
            yield url
        return
    url, drop = create_pg_database()
    try:
        migrate.upgrade(url)
        yield url
    finally:
        drop()


def create_key(database_url: str, role: str, **scope: str) -> str:
    """Create an API key directly in the database and return its secret."""
    engine = make_engine(database_url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            _, secret = keys.create_key(session, role=role, **scope)
    finally:
        engine.dispose()
    return secret


def free_port() -> int:
    """Return a free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(
    database_url: str, *, workers: int = 1, threads: int = 4
) -> Iterator[tuple[str, int]]:
    """Run gunicorn on a free loopback port; yield its base URL and master pid."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "QUORUM_SCHEDULER": "false",
        "QUORUM_LOG_LEVEL": os.environ.get("QUORUM_LOG_LEVEL", "WARNING"),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--log-level",
            "warning",
            "orchestrator.wsgi:app",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, process)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_healthy(base: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not become healthy")


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process and its children (Linux /proc), in MB."""
    pids = [pid] + _children(pid)
    peak_kb = 0
    for one in pids:
        with contextlib.suppress(OSError), open(f"/proc/{one}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
    return peak_kb / 1024


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]
    return []
