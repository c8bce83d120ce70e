"""Identity (Keystone) tables."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, Double, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, MappedColumn, declared_attr, mapped_column

from onestack.db.base import Base, JSONDoc, LongText, indexes, owner_ref, serial_key

#: Stored in ``domain_id`` columns for global (domain-less) roles so uniqueness holds.
NULL_DOMAIN = "<<null>>"


def _key_of(table: str, *, index: bool | None = None) -> MappedColumn[str]:
    """A row's reference to the ``table`` row it belongs to, part of the row's key: the row
    is deleted with it."""
    return owner_ref(f"{table}.id", String(64), primary_key=True, index=index)


class _InDomain:
    """Mixin of projects, users and groups: an id, a name and the domain the name is unique
    in, ahead of the table's own columns."""

    id: Mapped[str] = mapped_column(String(64), primary_key=True, sort_order=-1)
    name: Mapped[str] = mapped_column(String(255), sort_order=-1)
    domain_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("identity_domain.id"), sort_order=-1)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[UniqueConstraint]:
        return (UniqueConstraint("domain_id", "name"),)


class Domain(Base):
    __tablename__ = "identity_domain"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(LongText, default=None)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    created_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Project(_InDomain, Base):
    __tablename__ = "identity_project"
    parent_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    description: Mapped[str | None] = mapped_column(LongText, default=None)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    created_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ProjectTag(Base):
    __tablename__ = "identity_project_tag"
    project_id: Mapped[str] = _key_of("identity_project")
    name: Mapped[str] = mapped_column(String(255), primary_key=True)


class User(_InDomain, Base):
    __tablename__ = "identity_user"
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    default_project_id: Mapped[str | None] = mapped_column(String(64), default=None)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    password_created_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    password_expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    password_history: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    failed_auth_count: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_auth_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_active_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Group(_InDomain, Base):
    __tablename__ = "identity_group"
    description: Mapped[str | None] = mapped_column(LongText, default=None)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)


class GroupMembership(Base):
    __tablename__ = "identity_group_membership"
    user_id: Mapped[str] = _key_of("identity_user")
    group_id: Mapped[str] = _key_of("identity_group", index=True)


class Role(Base):
    __tablename__ = "identity_role"
    __table_args__ = (UniqueConstraint("name", "domain_id"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    domain_id: Mapped[str] = mapped_column(String(64), default=NULL_DOMAIN)
    description: Mapped[str | None] = mapped_column(LongText, default=None)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)


class ImpliedRole(Base):
    __tablename__ = "identity_implied_role"
    prior_role_id: Mapped[str] = _key_of("identity_role")
    implied_role_id: Mapped[str] = _key_of("identity_role")


class Assignment(Base):
    """A role granted to an actor (user or group) on a target (project, domain or system)."""

    __tablename__ = "identity_assignment"
    __table_args__ = indexes(__tablename__, target="target_id")
    type: Mapped[str] = mapped_column(String(32), primary_key=True)
    actor_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    target_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    inherited: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=False)


class Region(Base):
    __tablename__ = "identity_region"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    description: Mapped[str | None] = mapped_column(LongText, default=None)
    parent_region_id: Mapped[str | None] = mapped_column(String(255), default=None)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)


class Service(Base):
    __tablename__ = "identity_service"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)


class Endpoint(Base):
    __tablename__ = "identity_endpoint"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = owner_ref("identity_service.id", String(64))
    interface: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(LongText)
    region_id: Mapped[str | None] = mapped_column(String(255), default=None)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)


class ApplicationCredential(Base):
    __tablename__ = "identity_app_cred"
    __table_args__ = (UniqueConstraint("user_id", "name"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = owner_ref("identity_user.id", String(64))
    project_id: Mapped[str | None] = mapped_column(String(64), default=None)
    secret_hash: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(LongText, default=None)
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    unrestricted: Mapped[bool] = mapped_column(Boolean, default=False)
    system: Mapped[str | None] = mapped_column(String(64), default=None)
    roles: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    access_rules: Mapped[list[dict[str, Any]]] = mapped_column(JSONDoc, default=list)
    created_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class AccessRule(Base):
    __tablename__ = "identity_access_rule"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = owner_ref("identity_user.id", String(64), index=True)
    service: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(16))


class Credential(Base):
    __tablename__ = "identity_credential"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64), default=None)
    type: Mapped[str] = mapped_column(String(255))
    encrypted_blob: Mapped[str] = mapped_column(LongText)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)


class RevocationEvent(Base):
    """Tokens matching every non-null field and issued before ``issued_before`` are revoked."""

    __tablename__ = "identity_revocation_event"
    id: Mapped[int] = serial_key()
    user_id: Mapped[str | None] = mapped_column(String(64), default=None)
    project_id: Mapped[str | None] = mapped_column(String(64), default=None)
    domain_id: Mapped[str | None] = mapped_column(String(64), default=None)
    audit_id: Mapped[str | None] = mapped_column(String(64), default=None)
    audit_chain_id: Mapped[str | None] = mapped_column(String(64), default=None)
    app_cred_id: Mapped[str | None] = mapped_column(String(64), default=None)
    issued_before: Mapped[float] = mapped_column(Double)
    revoked_at: Mapped[float] = mapped_column(Double, index=True)


class CacheGeneration(Base):
    """A counter bumped by every identity write; other processes drop caches when it moves."""

    __tablename__ = "identity_cache_generation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)


class Document(Base):
    """Small identity documents keyed by kind: policies, OAuth1 consumers, endpoint groups,
    domain configuration options. Each kind's rules live in ``identity.documents``."""

    __tablename__ = "identity_document"
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    parent_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)


class Trust(Base):
    """OS-TRUST delegation from a trustor to a trustee on a project."""

    __tablename__ = "identity_trust"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    trustor_user_id: Mapped[str] = mapped_column(String(64), index=True)
    trustee_user_id: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64), default=None)
    impersonation: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    remaining_uses: Mapped[int | None] = mapped_column(Integer, default=None)
    allow_redelegation: Mapped[bool] = mapped_column(Boolean, default=False)
    redelegation_count: Mapped[int | None] = mapped_column(Integer, default=None)
    redelegated_trust_id: Mapped[str | None] = mapped_column(String(64), default=None)
    roles: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
