"""Declarative base and column types portable across SQLite, MariaDB/MySQL and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


class Base(DeclarativeBase):
    """Base of every table; ``metadata`` is the one Alembic migrates."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: dict[Any, Any] = {dt.datetime: Timestamp}


class Timestamps:
    """Mixin: a row's ``created_at`` and ``updated_at`` (both required), after the table's own
    columns."""

    created_at: Mapped[dt.datetime] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column()


class TimestampsNullUntilUpdated:
    """Mixin: a row's required ``created_at`` and its ``updated_at``, None until the row is
    first updated, after the table's own columns."""

    created_at: Mapped[dt.datetime] = mapped_column()
    updated_at: Mapped[dt.datetime | None] = mapped_column(default=None)
