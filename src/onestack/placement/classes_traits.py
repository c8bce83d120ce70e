"""Custom resource classes and traits, and the traits of providers. Part of ``PlacementManager``
(``ClassTraitStore``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from onestack.common.timeutils import utcnow
from onestack.db.placement import (
    Allocation,
    CustomResourceClass,
    CustomTrait,
    Inventory,
    ProviderTrait,
)
from onestack.placement import errors
from onestack.placement.models import (
    ANY,
    CUSTOM_RE,
    STANDARD_RESOURCE_CLASSES,
    STANDARD_TRAITS,
)
from onestack.placement.store import PlacementStore


class ClassTraitStore(PlacementStore):
    """Custom resource classes and traits, and the traits of providers."""

    # ------------------------------------------------------------------ resource classes
    def list_resource_classes(self) -> list[str]:
        with self.db.reader() as s:
            custom = list(s.execute(select(CustomResourceClass.name)
                                    .order_by(CustomResourceClass.name)).scalars())
        return [*STANDARD_RESOURCE_CLASSES, *custom]

    def get_resource_class(self, name: str) -> str:
        with self.db.reader() as s:
            if not self.resource_class_exists(s, name):
                raise errors.not_found(f"No such resource class {name}.")
        return name

    @staticmethod
    def _custom_name(name: str, kind: str) -> None:
        if not CUSTOM_RE.match(name):
            raise errors.bad_request(f"'{name}' is not a valid custom {kind} name: it must "
                                     "match ^CUSTOM_[A-Z0-9_]+$")

    def create_resource_class(self, name: str, exist_ok: bool = False) -> bool:
        """Create ``CUSTOM_*`` class ``name``; True if created (409 if it exists, unless
        ``exist_ok``)."""
        self._custom_name(name, "resource class")

        def work(s: Session) -> bool:
            if s.get(CustomResourceClass, name) is not None:
                if exist_ok:
                    return False
                raise errors.conflict(f"Conflicting resource class already exists: {name}",
                                      errors.DUPLICATE_NAME)
            s.add(CustomResourceClass(name=name, created_at=utcnow()))
            s.flush()
            return True

        try:
            return self._write(work)
        except IntegrityError as exc:
            if exist_ok:
                return False
            raise errors.conflict(f"Conflicting resource class already exists: {name}",
                                  errors.DUPLICATE_NAME) from exc

    def _custom_only(self, name: str, kind: str) -> None:
        if not name.startswith("CUSTOM_"):
            raise errors.bad_request(f"Cannot modify or delete standard {kind} {name}.")

    def rename_resource_class(self, old: str, new: str) -> None:
        """Rename a custom class (microversions 1.2–1.6); inventories/allocations follow."""
        self._custom_only(old, "resource class")
        self._custom_name(new, "resource class")

        def work(s: Session) -> None:
            row = s.get(CustomResourceClass, old)
            if row is None:
                raise errors.not_found(f"No such resource class {old}.")
            if old == new:
                return
            if s.get(CustomResourceClass, new) is not None:
                raise errors.conflict(f"Resource class already exists: {new}",
                                      errors.DUPLICATE_NAME)
            s.add(CustomResourceClass(name=new, created_at=row.created_at))
            for model in (Inventory, Allocation):
                s.execute(update(model).where(model.resource_class == old)
                          .values(resource_class=new)
                          .execution_options(synchronize_session=False))
            s.delete(row)

        self._write(work)

    def delete_resource_class(self, name: str) -> None:
        """Delete a custom class (409 while any provider has inventory of it)."""
        self._custom_only(name, "resource class")
        self._delete_unused(
            CustomResourceClass, name, f"No such resource class {name}.",
            select(Inventory.resource_provider_id).where(Inventory.resource_class == name),
            f"Unable to delete resource class {name}. Class is in use in inventory.")

    def _delete_unused(self, model: type[CustomResourceClass | CustomTrait], name: str,
                       missing: str, users: Select[tuple[int]], in_use: str) -> None:
        """Delete the custom class or trait ``name``: 404 saying ``missing`` when there is
        none, 409 saying ``in_use`` while the query ``users`` finds a provider of it."""
        def work(s: Session) -> None:
            row = s.get(model, name)
            if row is None:
                raise errors.not_found(missing)
            if s.execute(users.limit(1)).first():
                raise errors.conflict(in_use)
            s.delete(row)

        self._write(work)
    # ------------------------------------------------------------------ traits
    def list_traits(self, names: list[str] | None = None, prefix: str | None = None,
                    associated: bool | None = None) -> list[str]:
        """Standard and custom traits, optionally only ``names``, those starting with
        ``prefix``, or only those (not) associated with a provider."""
        with self.db.reader() as s:
            custom = set(s.execute(select(CustomTrait.name)).scalars())
            assoc = None
            if associated is not None:
                assoc = set(s.execute(select(ProviderTrait.trait).distinct()).scalars())
        result = STANDARD_TRAITS | custom
        if names is not None:
            result &= set(names)
        if prefix is not None:
            result = {t for t in result if t.startswith(prefix)}
        if assoc is not None:
            result = result & assoc if associated else result - assoc
        return sorted(result)

    def trait_exists(self, name: str) -> bool:
        if name in STANDARD_TRAITS:
            return True
        with self.db.reader() as s:
            return s.get(CustomTrait, name) is not None

    def create_trait(self, name: str) -> bool:
        """Create ``CUSTOM_*`` trait ``name`` if missing; True if it was created."""
        self._custom_name(name, "trait")

        def work(s: Session) -> bool:
            if s.get(CustomTrait, name) is not None:
                return False
            s.add(CustomTrait(name=name, created_at=utcnow()))
            s.flush()
            return True

        try:
            return self._write(work)
        except IntegrityError:
            return False

    def delete_trait(self, name: str) -> None:
        """Delete a custom trait (400 for standard ones, 409 while a provider has it)."""
        if name in STANDARD_TRAITS:
            raise errors.bad_request(f"Cannot delete standard trait {name}.")
        self._delete_unused(
            CustomTrait, name, f"No such trait(s): {name}.",
            select(ProviderTrait.resource_provider_id).where(ProviderTrait.trait == name),
            f"The trait {name} is in use by a resource provider.")

    def get_provider_traits(self, uuid: str) -> tuple[int, list[str]]:
        return self._members(uuid, ProviderTrait, "trait")

    def set_provider_traits(self, uuid: str, traits: Iterable[str],
                            generation: Any = ANY) -> tuple[int, list[str]]:
        """Replace the provider's traits (400 for unknown traits); returns
        ``(new_generation, traits)``."""
        return self._replace_members(uuid, ProviderTrait, "trait", sorted(set(traits)),
                                     generation, self._check_traits)

    def delete_provider_traits(self, uuid: str) -> int:
        def work(s: Session) -> int:
            row = self._row(s, uuid, lock=True)
            s.execute(delete(ProviderTrait).where(ProviderTrait.resource_provider_id == row.id))
            return self._bump(s, row)

        return self._write(work)
