"""Fault rules and the file-backed table every process of the cloud consults.

``DATA/faults.json`` holds the rules; a process re-reads it when its modification time
changes (looked at most every ``RELOAD_INTERVAL`` seconds on the request path); the API
and the CLI answer a change only ``SETTLE`` seconds later, when every process has seen it.
Firing a rule that has a ``count`` is a read-modify-write under an exclusive ``flock``, so a
count of 3 fires 3 times across all processes, never more.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

from onestack.common.errors import ValidationError
from onestack.common.timeutils import isotime, utcnow

FAULT_FILE = "faults.json"
#: Seconds between two looks at the rule file from the request path (a ``stat`` costs a
#: few microseconds, too much for every request). Whoever changes the rules waits
#: ``SETTLE`` before answering, so every process applies the change to what comes next.
RELOAD_INTERVAL = 0.05
SETTLE = 2 * RELOAD_INTERVAL
#: Rules a cloud holds at most (a bound, not a quota anyone should reach).
MAX_RULES = 100
KINDS = ("http", "build", "host_down", "bus")
SERVICES = ("*", "identity", "image", "placement", "network", "compute", "volume")

_PATTERN = {"type": "string", "minLength": 1, "maxLength": 255}
RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "kind": {"enum": list(KINDS)},
        "service": {"enum": list(SERVICES)},
        "method": _PATTERN,
        "path": _PATTERN,
        "host": _PATTERN,
        "topic": _PATTERN,
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "message": {"type": "string", "maxLength": 1024},
        "delay": {"type": "number", "minimum": 0, "maximum": 60},
        "rate": {"type": "number", "minimum": 0, "maximum": 1},
        "count": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000000},
    },
    "additionalProperties": False,
}
_VALIDATOR = Draft7Validator(RULE_SCHEMA)


@dataclass
class FaultRule:
    """One rule. Patterns are shell-style globs (``*``, ``?``, ``[...]``), matched case
    sensitively except HTTP methods."""

    kind: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    service: str = "*"
    method: str = "*"
    path: str = "*"
    host: str = "*"
    topic: str = "*"
    status: int = 503
    message: str = ""
    delay: float = 0.0
    rate: float = 1.0
    count: int | None = None
    hits: int = 0
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for ``onestack status`` and the CLI."""
        what = {
            "http": f"{self.service} {self.method} {self.path} -> "
                    + (f"{self.status}" + (f" after {self.delay:g}s" if self.delay else "")
                       if self.status else f"+{self.delay:g}s"),
            "build": f"builds on {self.host} end in ERROR",
            "host_down": f"compute host {self.host} down",
            "bus": f"bus drops {self.topic} {self.method}",
        }[self.kind]
        left = "" if self.count is None else f", {self.count} left"
        return f"{what} (rate {self.rate:g}{left}, fired {self.hits})"


def parse_rule(body: Any) -> FaultRule:
    """A new rule from a request body (``ValidationError`` naming the first problem)."""
    if not isinstance(body, dict):
        raise ValidationError("A fault rule must be a JSON object.")
    for err in _VALIDATOR.iter_errors(body):
        where = ".".join(str(p) for p in err.absolute_path) or "rule"
        raise ValidationError(f"Invalid fault rule: {where}: {err.message}")
    rule = FaultRule(**{"kind": "http", **body}, created_at=isotime(utcnow()))
    if rule.kind == "http":
        rule.method = rule.method.upper()
        if "status" not in body and rule.delay:
            rule.status = 0  # latency only
    elif rule.kind == "bus" and body.get("method") is None:
        rule.method = "*"
    return rule


def _load(path: Path) -> list[FaultRule]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        return []  # a damaged file injects nothing (it is rewritten on the next change)
    rules = []
    for item in raw.get("rules", []) if isinstance(raw, dict) else []:
        with contextlib.suppress(TypeError, ValueError):
            rules.append(FaultRule(**item))
    return rules


class FaultTable:
    """The rules of one data dir, as this process sees them.

    ``active`` is False when there is no rule (the request path then costs one clock read
    every ``RELOAD_INTERVAL``); ``match_*`` return the rule that fires, if any.
    """

    def __init__(self, data_dir: Path, rng: random.Random | None = None) -> None:
        self.path = Path(data_dir) / FAULT_FILE
        self._path_str = str(self.path)
        self.lock_path = Path(data_dir) / (FAULT_FILE + ".lock")
        self.rules: list[FaultRule] = []
        self._mtime: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._loaded = 0.0
        self._rng = rng or random.Random()
        self._mutex = threading.Lock()
        self.reload(force=True)

    # ----------------------------------------------------------------- reading
    @property
    def active(self) -> bool:
        self.reload()
        return bool(self.rules)

    def reload(self, force: bool = False) -> None:
        """Re-read the file when it changed: its inode (every write renames a new file
        over the old), modification time or size differ, or a second went by (two writes
        within one tick of the file system's clock may share an mtime)."""
        now = time.monotonic()
        if not force and RELOAD_INTERVAL and now - self._checked < RELOAD_INTERVAL:
            return
        try:
            st = os.stat(self._path_str)
            key: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        if force or key != self._mtime or (key is not None and now - self._loaded > 1.0):
            self._mtime = key
            self._loaded = now
            self.rules = _load(self.path) if key is not None else []
        self._checked = now

    def list(self) -> list[FaultRule]:
        self.reload(force=True)
        return list(self.rules)

    # ----------------------------------------------------------------- writing
    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[FaultRule]]:
        """The current rules under the cross-process lock; what the block leaves in the
        list is written back (atomically: a new file renamed over the old)."""
        with self._mutex:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                rules = _load(self.path)
                before = [r.to_dict() for r in rules]
                yield rules
                if [r.to_dict() for r in rules] != before:
                    self._write(rules)
            finally:
                os.close(fd)

    def _write(self, rules: list[FaultRule]) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"rules": [r.to_dict() for r in rules]}, fh, indent=1)
        os.replace(tmp, self.path)
        self.rules = list(rules)
        st = self.path.stat()
        self._mtime = (st.st_ino, st.st_mtime_ns, st.st_size)
        self._checked = self._loaded = time.monotonic()

    def add(self, rule: FaultRule) -> FaultRule:
        with self._locked() as rules:
            if len(rules) >= MAX_RULES:
                raise ValidationError(f"At most {MAX_RULES} fault rules may exist.")
            rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        with self._locked() as rules:
            kept = [r for r in rules if r.id != rule_id]
            found = len(kept) != len(rules)
            rules[:] = kept
        return found

    def clear(self) -> int:
        with self._locked() as rules:
            n = len(rules)
            rules.clear()
        return n

    # ----------------------------------------------------------------- matching
    def _fire(self, candidates: list[FaultRule]) -> FaultRule | None:
        """The first candidate whose dice say so, counted under the lock (a rule another
        process used up or removed meanwhile does not fire)."""
        for cand in candidates:
            if cand.rate < 1.0 and self._rng.random() >= cand.rate:
                continue
            with self._locked() as rules:
                for rule in rules:
                    if rule.id == cand.id:
                        rule.hits += 1
                        if rule.count is not None:
                            rule.count -= 1
                            if rule.count <= 0:
                                rules.remove(rule)
                        return rule
        return None

    def match_http(self, service: str, method: str, path: str) -> FaultRule | None:
        if not self.active:
            return None
        cands = [r for r in self.rules if r.kind == "http"
                 and r.service in ("*", service)
                 and fnmatchcase(method.upper(), r.method)
                 and fnmatchcase(path, r.path)]
        return self._fire(cands) if cands else None

    def match_build(self, host: str) -> FaultRule | None:
        if not self.active:
            return None
        cands = [r for r in self.rules if r.kind == "build" and fnmatchcase(host, r.host)]
        return self._fire(cands) if cands else None

    def match_bus(self, topic: str, method: str) -> FaultRule | None:
        if not self.active:
            return None
        cands = [r for r in self.rules if r.kind == "bus" and fnmatchcase(topic, r.topic)
                 and fnmatchcase(method, r.method)]
        return self._fire(cands) if cands else None

    def hosts_down(self, hosts: list[str]) -> set[str]:
        """Which of ``hosts`` a ``host_down`` rule holds down (rate and count do not apply:
        a host is down while its rule exists)."""
        if not self.active:
            return set()
        pats = [r.host for r in self.rules if r.kind == "host_down"]
        if not pats:
            return set()
        return {h for h in hosts if any(fnmatchcase(h, p) for p in pats)}
