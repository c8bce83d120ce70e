"""The endpoints to fuzz, read from the service apps (``build_cloud`` on a scratch data dir)."""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Path placeholders (``{server_id}``).
PARAM = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")


@dataclass(frozen=True)
class Endpoint:
    """One method of one route of one service."""

    service: str
    method: str
    template: str

    @property
    def params(self) -> list[str]:
        return PARAM.findall(self.template)

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.template}"


def _router(app: Any) -> Any:
    """The Starlette app inside a service's middleware stack (``None`` if there is none)."""
    for _ in range(10):
        if app is None or hasattr(app, "routes"):
            return app
        app = getattr(app, "app", None)
    return None


def enumerate_endpoints() -> list[Endpoint]:
    """Every (service, method, path template) the cloud serves, ``HEAD`` aside (it is
    ``GET`` without a body)."""
    from onestack.bootstrap import build_cloud
    from onestack.config import Settings

    tmp = Path(tempfile.mkdtemp(prefix="onestack-fuzz-routes-"))
    try:
        cloud = build_cloud(Settings(data_dir=tmp / "data", compute_driver="fake",
                                     network_driver="noop"), run_bootstrap=False)
        out: list[Endpoint] = []
        for service, app in cloud.apps.items():
            router = _router(app)
            if router is None:
                continue
            for r in router.routes:
                for method in sorted(getattr(r, "methods", None) or ()):
                    if method != "HEAD":
                        out.append(Endpoint(service, method, r.path))
        cloud.db.engine.dispose()
        return sorted(set(out), key=lambda e: (e.service, e.template, e.method))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
