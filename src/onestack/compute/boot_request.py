"""The boot request: what ``POST /servers`` hands to the scheduler, and the scheduler to the
host agent that builds the guest (Nova's ``RequestSpec`` and build arguments), as one typed
value. It crosses the bus as plain JSON (``to_wire``) and is checked back into this type at
each end (``from_wire``), so neither the scheduler nor the agent re-parses a loose dict.

Moves (resize, migrate, unshelve) ask the scheduler with a partial request: a host, a zone.
A boot recovered after a crash is rebuilt from the instance's ``system_metadata``
(``from_system_metadata``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from onestack.common.errors import BadRequest

InstanceDict = dict[str, Any]


def _opt_str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"boot request: {key} must be a string")
    return value or None


def _dict(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"boot request: {key} must be an object")
    return dict(value)


@dataclass
class BootRequest:
    """Where a server may go and what its host agent needs to build it."""

    #: ``zone``, ``zone:host`` or ``zone:host:node`` as the user asked (None: any).
    availability_zone: str | None = None
    #: The image's properties (the image filters read ``hw_*``/``img_*`` ones).
    image_properties: dict[str, Any] = field(default_factory=dict)
    #: Server group uuid (affinity policies), from the scheduler hints.
    group: str | None = None
    #: The other scheduler hints (``same_host``, ``different_host`` …).
    hints: dict[str, Any] = field(default_factory=dict)
    #: A requested host and node (2.74; admins).
    host: str | None = None
    hypervisor_hostname: str | None = None
    #: The server's admin password (the agent injects it).
    admin_pass: str | None = None
    #: The new instances' common fields, sent so that neither the scheduler nor the agent
    #: reads the rows back (None: read them).
    instance: InstanceDict | None = None
    #: instance uuid -> display name, for the instances of this request.
    names: dict[str, str] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """The JSON the bus carries."""
        return asdict(self)

    @classmethod
    def from_wire(cls, doc: dict[str, Any] | BootRequest | None) -> BootRequest:
        """A request from the bus (400 on a value of the wrong type)."""
        if isinstance(doc, BootRequest):
            return doc
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise BadRequest("boot request must be an object")
        instance = doc.get("instance")
        if instance is not None and not isinstance(instance, dict):
            raise BadRequest("boot request: instance must be an object")
        names = _dict(doc, "names")
        return cls(availability_zone=_opt_str(doc, "availability_zone"),
                   image_properties=_dict(doc, "image_properties"),
                   group=_opt_str(doc, "group"), hints=_dict(doc, "hints"),
                   host=_opt_str(doc, "host"),
                   hypervisor_hostname=_opt_str(doc, "hypervisor_hostname"),
                   admin_pass=_opt_str(doc, "admin_pass"), instance=instance,
                   names={str(k): str(v) for k, v in names.items()})

    def schedule_record(self) -> dict[str, Any]:
        """What is kept with the instance (Nova's RequestSpec) so that a boot whose
        scheduling was lost in a crash can be scheduled again (``compute/recovery.py``)."""
        return {"availability_zone": self.availability_zone, "group": self.group,
                "hints": dict(self.hints), "host": self.host,
                "hypervisor_hostname": self.hypervisor_hostname}

    @classmethod
    def from_system_metadata(cls, sm: dict[str, Any]) -> BootRequest:
        """The request of a recorded boot (what ``POST /servers`` cast)."""
        hints = dict(sm.get("scheduler_hints") or {})
        doc: dict[str, Any] = {"availability_zone": sm.get("requested_az"),
                               "group": hints.get("group"),
                               "hints": {k: v for k, v in hints.items() if k != "group"}}
        doc.update(sm.get("schedule_request") or {})
        doc["image_properties"] = sm.get("image_properties") or {}
        return cls.from_wire(doc)
