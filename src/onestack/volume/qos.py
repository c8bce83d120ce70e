"""QoS specs: named key/value sets (Cinder's ``qos-specs``) associated with volume types.
This backend applies none of them to I/O (the specs are kept and shown, as for a Cinder
backend without QoS support); front-end specs would be the hypervisor's to apply."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from onestack.common.errors import BadRequest, NotFound
from onestack.common.timeutils import utcnow
from onestack.db.volume import QosSpecs, VolumeType
from onestack.volume.manager import VolumeManager
from onestack.volume.row_changes import check_name_free, without_key

CONSUMERS = ("back-end", "front-end", "both")


class Qos:
    """QoS specs over the volume manager's database (admin-only, enforced by the routes)."""

    def __init__(self, manager: VolumeManager) -> None:
        self.m = manager

    def _get(self, s: Session, qos_id: str) -> QosSpecs:
        q = s.get(QosSpecs, qos_id)
        if q is None:
            raise NotFound(f"QoS spec {qos_id} could not be found.")
        return q

    def list(self) -> list[QosSpecs]:
        return self.m.read(lambda s: list(s.scalars(
            select(QosSpecs).order_by(QosSpecs.name))))

    def get(self, qos_id: str) -> QosSpecs:
        return self.m.read(lambda s: self._get(s, qos_id))

    def create(self, name: str, consumer: str, specs: dict[str, str]) -> QosSpecs:
        if consumer not in CONSUMERS:
            raise BadRequest(f"Invalid input received: consumer {consumer} is not one of "
                             f"{', '.join(CONSUMERS)}.")

        def run(s: Session) -> QosSpecs:
            check_name_free(s, QosSpecs, name, "QoS Specs")
            q = QosSpecs(id=str(uuid.uuid4()), name=name, consumer=consumer,
                         specs=dict(specs), created_at=utcnow())
            s.add(q)
            return q
        return self.m.write(run)

    def set_keys(self, qos_id: str, specs: dict[str, str]) -> None:
        def run(s: Session) -> None:
            q = self._get(s, qos_id)
            specs_ = dict(specs)
            if "consumer" in specs_:
                consumer = specs_.pop("consumer")
                if consumer not in CONSUMERS:
                    raise BadRequest(f"Invalid input received: consumer {consumer} is not "
                                     f"one of {', '.join(CONSUMERS)}.")
                q.consumer = consumer
            q.specs = {**(q.specs or {}), **specs_}
        self.m.write(run)

    def delete_keys(self, qos_id: str, keys: list[Any]) -> None:
        def run(s: Session) -> None:
            q = self._get(s, qos_id)
            specs = dict(q.specs or {})
            for k in keys:
                specs = without_key(specs, k, f"QoS spec {qos_id} has no key {k}.")
            q.specs = specs
        self.m.write(run)

    def delete(self, qos_id: str, force: bool) -> None:
        def run(s: Session) -> None:
            q = self._get(s, qos_id)
            types = list(s.scalars(select(VolumeType).where(VolumeType.qos_specs_id == q.id)))
            if types and not force:
                raise BadRequest(f"QoS Specs {qos_id} is still associated with entities.")
            for t in types:
                t.qos_specs_id = None
            s.delete(q)
        self.m.write(run)

    def associations(self, qos_id: str) -> list[VolumeType]:
        def run(s: Session) -> list[VolumeType]:
            self._get(s, qos_id)
            return list(s.scalars(select(VolumeType).where(VolumeType.qos_specs_id == qos_id)))
        return self.m.read(run)

    def associate(self, qos_id: str, type_id: str | None, add: bool) -> None:
        def run(s: Session) -> None:
            self._get(s, qos_id)
            if type_id is None:  # disassociate all
                for t in s.scalars(select(VolumeType).where(
                        VolumeType.qos_specs_id == qos_id)):
                    t.qos_specs_id = None
                return
            t = s.get(VolumeType, type_id)
            if t is None:
                raise NotFound(f"Volume type {type_id} could not be found.")
            if add:
                if t.qos_specs_id not in (None, qos_id):
                    raise BadRequest(f"Type {type_id} is already associated with another "
                                     f"qos specs: {t.qos_specs_id}")
                t.qos_specs_id = qos_id
            elif t.qos_specs_id == qos_id:
                t.qos_specs_id = None
        self.m.write(run)
