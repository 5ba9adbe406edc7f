"""Fixtures: a real Mongo-wire server (nx-27017) and opened warehouses of both kinds.

One nx-27017 server serves the whole session (it starts in well under a second but
there is no need to pay that per test); each test gets its own database in it, so no
test sees another's documents. `warehouse` runs a test once per adapter.
"""
from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from llmtwin.infra.process import LocalServer, free_port
from llmtwin.warehouse import Warehouse, open_warehouse


def nx_27017_binary() -> Path:
    path = Path(sys.executable).parent / "nx-27017"
    if not path.exists():
        raise FileNotFoundError(f"nx-27017 not found at {path}; is the nx-27017 package installed?")
    return path


def nx_27017_server(host: str, port: int, data_dir: Path) -> LocalServer:
    """A Mongo-wire-compatible server (nx-27017, SQLite inside) keeping everything in `data_dir`,
    its PID file too: by default every nx-27017 shares one PID file, and a second server would refuse to start."""
    argv = [str(nx_27017_binary()), "--host", host, "-p", str(port), "--data-dir", str(data_dir),
            "--pid-file", str(data_dir / "nx_27017.pid"), "--log-file", str(data_dir / "nx_27017.log")]
    return LocalServer("nx-27017", argv, host, port, log_path=data_dir / "server.log")


@pytest.fixture(scope="session")
def mongo_address(tmp_path_factory) -> str:
    """host:port of a Mongo-wire-compatible server for the session."""
    data_dir = tmp_path_factory.mktemp("nx-27017")
    host, port = "127.0.0.1", free_port()
    server = nx_27017_server(host, port, data_dir).start()
    yield f"{host}:{port}"
    server.stop()


@pytest.fixture
def mongo_url(mongo_address) -> str:
    """A MongoDB URL whose database belongs to this test alone."""
    return f"mongodb://{mongo_address}/test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture(params=["sqlite", "mongo"])
async def warehouse(request) -> Warehouse:
    """An opened warehouse of each kind in turn (the Mongo server starts only when needed)."""
    url = request.getfixturevalue(f"{request.param}_url")
    opened = open_warehouse(url)
    yield opened
    await opened.close()


@asynccontextmanager
async def opened_warehouse(url: str) -> AsyncIterator[Warehouse]:
    """The warehouse at `url` for the block (a test reading or preparing what services share)."""
    opened = open_warehouse(url)
    try:
        yield opened
    finally:
        await opened.close()
