"""Page building blocks shared by the dashboard's pages: tables, forms, row actions.

Most pages are one generic template (``page.html``) fed with these plain structures: a
``Table`` of cells (text, link, status badge), ``Form``s made of ``Field``s (each becomes
a labelled, keyboard-reachable input) and per-row ``Action`` buttons (small POST forms
carrying the CSRF token). Jinja2 escapes every value, so API data never becomes markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cell:
    text: str = ""
    href: str = ""
    #: A status badge (``ACTIVE``, ``BUILD``...) rendered with its class; ``live`` marks a
    #: server status cell the page's script refreshes.
    status: str = ""
    live: str = ""


@dataclass
class Action:
    """A button that POSTs ``fields`` to ``url`` (asks first when ``confirm``)."""

    label: str
    url: str
    fields: dict[str, str] = field(default_factory=dict)
    confirm: str = ""
    danger: bool = False


@dataclass
class Row:
    cells: list[Cell]
    actions: list[Action] = field(default_factory=list)
    id: str = ""


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    empty: str = "Nothing here yet."
    next_url: str = ""
    prev_url: str = ""


@dataclass
class Field:
    name: str
    label: str
    kind: str = "text"  # text, password, number, select, multi, textarea, file, hidden, check
    value: str = ""
    options: list[tuple[str, str]] = field(default_factory=list)  # (value, label)
    required: bool = False
    help: str = ""
    checked: list[str] = field(default_factory=list)


@dataclass
class Form:
    title: str
    action: str
    fields: list[Field]
    submit: str = "Create"
    id: str = ""
    #: ``upload``: the page's script sends the file with a progress bar.
    upload: bool = False


def cell(value: Any, href: str = "") -> Cell:
    if value is None:
        return Cell("-", href)
    if isinstance(value, bool):
        return Cell("Yes" if value else "No", href)
    return Cell(str(value), href)


def status(value: Any, live: str = "") -> Cell:
    text = str(value or "-")
    return Cell(text, status=text.lower(), live=live)


def addresses(server: dict[str, Any]) -> str:
    out = []
    for net, addrs in (server.get("addresses") or {}).items():
        ips = ", ".join(a.get("addr", "") for a in addrs)
        out.append(f"{net}: {ips}")
    return "; ".join(out) or "-"
