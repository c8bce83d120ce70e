"""Declarative base and column types portable across SQLite, MariaDB/MySQL and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedColumn, mapped_column
from sqlalchemy.types import TypeEngine

_T = TypeVar("_T")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Naive-UTC timestamps with microseconds everywhere (MySQL's DATETIME needs fsp=6 for that).
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
#: JSON documents (native JSON on MariaDB/MySQL/PostgreSQL, TEXT on SQLite).
JSONDoc = JSON()
#: Long text (descriptions, blobs).
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def ID(length: int = 64) -> String:  # noqa: N802 - reads like a type
    return String(length)


def serial_key(**kw: Any) -> MappedColumn[int]:
    """An integer primary key numbered by the database (autoincrement; ``kw``: e.g.
    ``sort_order``)."""
    return mapped_column(Integer, primary_key=True, autoincrement=True, **kw)


def uuid_key(**kw: Any) -> MappedColumn[str]:
    """A 36-character UUID primary key chosen by the code (``kw``: e.g. ``sort_order``)."""
    return mapped_column(String(36), primary_key=True, **kw)


def owner_ref(target: str, type_: TypeEngine[_T], *, primary_key: bool = False,
              fk_name: str | None = None, **kw: Any) -> MappedColumn[_T]:
    """A reference to the ``table.column`` row this row belongs to: the row is deleted with
    it (``ON DELETE CASCADE``). ``fk_name`` names the foreign key (None: the naming
    convention's name); ``kw`` goes to ``mapped_column`` (``index``, ``sort_order``...)."""
    return mapped_column(type_, ForeignKey(target, ondelete="CASCADE", name=fk_name),
                         primary_key=primary_key, **kw)


def indexes(table: str, **columns: str | tuple[str, ...]) -> tuple[Index, ...]:
    """The ``table``'s indexes, one a keyword: ``what="column"`` (or a tuple of columns)
    indexes that column as ``ix_<table>_<what>``."""
    return tuple(Index(f"ix_{table}_{what}", *((cols,) if isinstance(cols, str) else cols))
                 for what, cols in columns.items())


class Base(DeclarativeBase):
    """Base of every table; ``metadata`` is the one Alembic migrates."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: dict[Any, Any] = {dt.datetime: Timestamp}


class Timestamps:
    """Mixin: a row's ``created_at`` and ``updated_at`` (both required), after the table's own
    columns."""

    created_at: Mapped[dt.datetime] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column()


class SerialWithUUID:
    """Mixin: an integer primary key numbered by the database and a unique UUID (the id the
    API shows), ahead of the table's own columns."""

    id: Mapped[int] = serial_key(sort_order=-1)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, sort_order=-1)


class TimestampsNullUntilUpdated:
    """Mixin: a row's required ``created_at`` and its ``updated_at``, None until the row is
    first updated, after the table's own columns."""

    created_at: Mapped[dt.datetime] = mapped_column()
    updated_at: Mapped[dt.datetime | None] = mapped_column(default=None)
