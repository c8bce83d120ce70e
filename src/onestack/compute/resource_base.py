"""What the compute API's resource route handlers share (``api_flavors.py``,
``api_keypairs.py``, ``api_quotas.py``, ``api_hosts.py``, ``api_groups.py``,
``api_usage.py``, ``api_images.py``): a base class that reaches the manager and the image
service through the ``ComputeAPI`` that builds them, and the policy target of a request."""

from __future__ import annotations

from typing import Any, Protocol

from onestack.api.app import ApiRequest
from onestack.compute.manager import ComputeManager


class ResourceHost(Protocol):
    """What a resource handler needs from the compute API."""

    m: ComputeManager
    images: Any


class ResourceHandler:
    """Base of one resource's route handlers; ``add_routes(r)`` registers them."""

    def __init__(self, api: ResourceHost) -> None:
        self.api = api

    @property
    def m(self) -> ComputeManager:
        return self.api.m

    @property
    def images(self) -> Any:
        return self.api.images

    def add_routes(self, r: Any) -> None:
        raise NotImplementedError


def tgt(req: ApiRequest, project_id: str | None = None) -> dict[str, Any]:
    """The policy target of a request about ``project_id`` (default: the caller's)."""
    return {"project_id": project_id or req.ctx.project_id or "",
            "user_id": req.ctx.user_id or ""}
