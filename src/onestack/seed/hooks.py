"""Init hooks: scripts in ``DATA/init/boot.d``, ``ready.d`` and ``shutdown.d``.

- ``boot.d``: before the services are built, on every start (also an in-place restart);
- ``ready.d``: once every API answers and the seed file (if any) is applied, in the
  background (the APIs keep answering meanwhile);
- ``shutdown.d``: when the cloud is asked to stop, while the APIs still answer.

Each stage runs its files in name order, one at a time: an executable file directly, a
``*.sh`` through ``/bin/sh`` and a ``*.py`` through this Python; other files are skipped.
They get the admin credentials as ``OS_*`` variables (ready and shutdown), ``ONESTACK_DATA_DIR``
and ``ONESTACK_HOOK_STAGE``; their output goes to the cloud's log. A failing or hanging
script (killed after ``timeout`` seconds) is reported and the next one runs: a hook never
stops the cloud.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from onestack.identity.setup import read_openrc

LOG = logging.getLogger("onestack.hooks")

STAGES = ("boot", "ready", "shutdown")
DEFAULT_TIMEOUT = 300.0


def hook_dir(data_dir: Path, stage: str) -> Path:
    return Path(data_dir) / "init" / f"{stage}.d"


def _command(path: Path) -> list[str] | None:
    if os.access(path, os.X_OK):
        return [os.fspath(path)]
    if path.suffix == ".sh":
        return ["/bin/sh", os.fspath(path)]
    if path.suffix == ".py":
        return [sys.executable, os.fspath(path)]
    return None


def run_hooks(data_dir: Path, stage: str, timeout: float = DEFAULT_TIMEOUT,
              with_credentials: bool = True) -> list[tuple[str, int | None]]:
    """Run the ``stage`` scripts; returns (name, exit code or None when killed) each."""
    folder = hook_dir(data_dir, stage)
    if not folder.is_dir():
        return []
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    if with_credentials:
        env.update(read_openrc(Path(data_dir) / "admin-openrc.sh"))
    env.update(ONESTACK_DATA_DIR=os.fspath(data_dir), ONESTACK_HOOK_STAGE=stage)
    results: list[tuple[str, int | None]] = []
    for path in sorted(folder.iterdir()):
        cmd = _command(path) if path.is_file() else None
        if cmd is None:
            continue
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            code = None
        for line in out.decode(errors="replace").splitlines()[-200:]:
            LOG.info("%s/%s: %s", stage, path.name, line)
        if code != 0:
            LOG.warning("%s hook %s %s", stage, path.name,
                        "timed out" if code is None else f"exited {code}")
        results.append((path.name, code))
    return results
