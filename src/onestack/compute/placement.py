"""The seam between compute and placement: ``ComputePlacement`` is all that compute asks of
the placement service (a provider per compute node with its inventory; claims, moves and
releases of a consumer's allocations). ``onestack up`` passes the in-process
``onestack.placement.manager.PlacementManager``; a compute host without placement's database
would pass an HTTP implementation (``/resource_providers``, ``/allocations``) of the same
protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class HeldAllocations(Protocol):
    """What a consumer holds (``ConsumerAllocations`` of placement)."""

    allocations: dict[str, dict[str, Any]]
    project_id: str | None
    user_id: str | None


class ComputePlacement(Protocol):
    """What the compute manager needs of placement (see module docstring)."""

    def ensure_provider(self, uuid: str, name: str,
                        parent_provider_uuid: str | None = None) -> object:
        """The provider ``uuid``, created when missing (idempotent)."""
        ...

    def set_inventories(self, uuid: str, inventories: Mapping[str, Mapping[str, Any] | int],
                        generation: Any = ..., allow_reserved_eq_total: bool = True,
                        ) -> tuple[int, dict[str, dict[str, Any]]]:
        """Replace the provider's whole inventory."""
        ...

    def claim_new(self, consumer_id: str, provider_uuid: str, resources: Mapping[str, int],
                  project_id: str, user_id: str) -> int:
        """A new consumer takes ``resources`` from one provider (409 when they do not
        fit)."""
        ...

    def claim(self, consumer_id: str, allocations: Mapping[str, Mapping[str, int]],
              project_id: str, user_id: str, consumer_generation: Any = ...,
              consumer_type: str | None = None) -> int:
        """Give ``consumer_id`` exactly ``allocations``."""
        ...

    def get_consumer_allocations(self, consumer_id: str) -> HeldAllocations: ...

    def release(self, consumer_id: str) -> bool:
        """Drop what ``consumer_id`` holds (False: it held nothing)."""
        ...
