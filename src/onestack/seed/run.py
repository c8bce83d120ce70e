"""Applying a seed file to the running cloud of a data dir (``onestack seed``, and
``onestack up`` with ``DATA/seed.yaml`` or ``--seed``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from onestack import runstate
from onestack.config import Settings
from onestack.seed.apply import Seeder, SeedReport
from onestack.seed.schema import SeedError, load_seed

SEED_FILE = "seed.yaml"


def seed_cloud(settings: Settings, path: Path,
               progress: Callable[[str], None] | None = None) -> SeedReport:
    """Apply the seed file ``path`` to the cloud running with ``settings``' data dir."""
    from onestack.status import admin_token

    doc = load_seed(path)
    state = runstate.read(settings.data_dir)
    if state is None or not state.alive():
        raise SeedError(f"onestack is not running with data dir {settings.data_dir}")
    urls = {name: runstate.local_url(url, state.connect_host)
            for name, url in state.services.items()}
    with httpx.Client(timeout=120) as client:
        token = admin_token(settings, client, urls["identity"])
        if token is None:
            raise SeedError("cannot log in as admin with the data dir's admin-openrc.sh")
        seeder = Seeder(client, urls, token, path.resolve().parent, progress)
        try:
            return seeder.apply(doc)
        except httpx.HTTPError as exc:
            raise SeedError(f"the cloud did not answer: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise SeedError(f"unexpected answer from the cloud: {exc!r}") from exc
