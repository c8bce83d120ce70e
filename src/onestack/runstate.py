"""What a running cloud is, for any shell: ``DATA/run.json``.

``onestack up`` writes it once every API answers (atomically: a new file renamed over the old)
and removes it when it stops: the process id, version, start time, drivers and the URL of
every service actually served (ports from settings, environment variables or options alike;
an optional service whose port was taken is absent). ``onestack status`` reads it instead of
recomputing ports from its own settings, so it is right from a fresh shell.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

RUN_FILE = "run.json"


@dataclass
class RunState:
    """A running ``onestack up`` as it described itself."""

    pid: int
    version: str
    started_at: str
    data_dir: str
    #: service name -> base URL (``http://host:port``, as in the catalog), in the order
    #: they are served.
    services: dict[str, str] = field(default_factory=dict)
    #: Where this machine reaches the services (the bind address; loopback for a wildcard).
    connect_host: str = "127.0.0.1"
    compute_driver: str = ""
    network_driver: str = ""

    def alive(self) -> bool:
        """Whether the process that wrote this still runs."""
        return process_running(self.pid)


def process_running(pid: int) -> bool:
    """Whether ``pid`` runs (an exited process its parent has not reaped yet does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill()
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def write(data_dir: Path, state: RunState) -> Path:
    """Store ``state`` as ``data_dir/run.json`` (readable by its owner only)."""
    path = Path(data_dir) / RUN_FILE
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(state), fh, indent=1)
    os.replace(tmp, path)
    return path


def read(data_dir: Path) -> RunState | None:
    """The run file of ``data_dir`` (None when there is none or it cannot be read)."""
    try:
        doc = json.loads((Path(data_dir) / RUN_FILE).read_text())
        return RunState(**doc)
    except (OSError, ValueError, TypeError):
        return None


def remove(data_dir: Path, pid: int) -> None:
    """Remove the run file if this process (``pid``) wrote it."""
    state = read(data_dir)
    if state is not None and state.pid == pid:
        (Path(data_dir) / RUN_FILE).unlink(missing_ok=True)


def local_url(self_url: str, connect_host: str) -> str:
    """``self_url`` (``http://host:port``) with the host this machine reaches it at."""
    port = self_url.rstrip("/").rsplit(":", 1)[-1]
    return f"http://{connect_host}:{port}"


def connect_host(bind: str) -> str:
    """The address a local client uses for services bound to ``bind``."""
    if bind in ("0.0.0.0", ""):
        return "127.0.0.1"
    if bind == "::":
        return "[::1]"
    return f"[{bind}]" if ":" in bind else bind


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
