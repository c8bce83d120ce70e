"""``VolumeHandler``: the base of a volume resource's route handlers (``api_volumes.py``,
``api_volume_actions.py``, ``api_snapshots.py``, ``api_admin.py``), bound to the volume API and
its manager; each declares its routes with ``@serves`` and ``volume/setup.py`` adds them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onestack.volume.api import VolumeAPI


class VolumeHandler:
    """Route handlers of one volume resource, over the API (``api``) and its manager (``m``)."""

    def __init__(self, api: VolumeAPI) -> None:
        self.api = api
        self.m = api.m
