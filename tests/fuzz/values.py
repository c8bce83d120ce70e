"""What the fuzzer sends: bad values, body mutations, bad ids, query strings and headers.

Everything is drawn from a ``random.Random`` the caller seeds, so a run is reproducible.
Values JSON cannot express (``NaN``, lone surrogates, integers beyond 64 bits, nesting
thousands deep) are spliced into the serialised body as raw text through :class:`Raw`.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class Raw:
    """A JSON fragment written verbatim where the value stands."""

    text: str


DEEP = 5000
#: Raw JSON fragments: what json.dumps cannot write or what a strict parser must refuse.
RAW_VALUES = [
    Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), Raw("-1e400"),
    Raw("9223372036854775808"), Raw("-9223372036854775809"), Raw("18446744073709551616"),
    Raw(str(2 ** 70)), Raw(str(-(2 ** 100))), Raw("1" * 400), Raw("1e19"), Raw("-1e300"),
    Raw('"\\ud800"'), Raw('"x\\udfffy"'), Raw('"\\udc00\\ud800"'), Raw('"a\\u0000b"'),
    Raw("[" * DEEP + "]" * DEEP), Raw('{"a":' * DEEP + "1" + "}" * DEEP),
    Raw("[" * 70 + "]" * 70), Raw("0.1e-400"), Raw("-0"), Raw("1E+2"),
]
#: Values JSON can express that are wrong somewhere.
PLAIN_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 1.5, -0.5, 2 ** 31, 2 ** 32 + 1, 2 ** 63 - 1, -(2 ** 63),
    1e18, 1.7976931348623157e308, "", " ", "x" * 256, "x" * 65536, "é中😀\u200b",
    "\t\n\r", "../../../etc/passwd", "%00%ff", "' OR '1'='1", "<script>", "null", "true",
    "-1", "1e309", "NaN", "Infinity", str(2 ** 70), "0x10", "not-a-uuid",
    "00000000-0000-0000-0000-000000000000", "10.0.0.1/33", "300.1.2.3", "fe80::1%eth0",
    "2001:db8::/129", "aa:bb:cc:dd:ee:ff:00", "1.2.3.4", [], [None], [[]], ["x"] * 300,
    [1, "a", None, {}], {}, {"a": {"b": {"c": "d"}}}, {"": ""}, {"x" * 300: 1},
    {"key": ["v"]}, {"k": 2 ** 62}, {"k": None}, {"k": ["v"]}, {"k": {"x": 1}},
    # lists of objects whose members have the wrong types (routes, fixed_ips, roles, ...)
    [{"id": None}], [{"id": 1}], [{"id": []}], [{"name": 1}], [{"name": {}}],
    [{"subnet_id": 1}], [{"subnet_id": []}], [{"subnet_id": {}}], [{"ip_address": []}],
    [{"ip_address": 1}], [{"destination": 1, "nexthop": []}], [{"uuid": 1}],
    [{"port": 1}], [{"fixed_ip": []}], [{"opt_name": 1, "opt_value": []}],
    [{"start": 1, "end": []}], [{"mac_address": 1, "ip_address": {}}], [{"op": 1}],
    [{"op": "add", "path": 1, "value": []}], [{"op": "replace", "path": "/x" * 100}],
]
BAD_IDS = [
    "x", "0", "-1", str(2 ** 70), "9" * 40, "00000000-0000-0000-0000-000000000000",
    "not a uuid", "x" * 300, "x" * 5000, "%ED%A0%80", "%ED%BF%BF", "a%00b", "%FF%FE",
    "%F0%9F%98%80", "..", "%2E%2E", "%2F", "a%20b", "1e400", "NaN", "null", "true",
    "%22%5Cud800%22", "' OR 1=1 --", "%25", "~",
]
QUERY_VALUES = [
    "-1", "abc", str(2 ** 70), str(2 ** 63), "1e400", "NaN", "", "%ED%A0%80", "%00",
    "x" * 5000, "1,2,3", "true", "None", "00000000-0000-0000-0000-000000000000",
    "9999-99-99T99:99:99Z", "2020-13-45", "%FF", "0", "1.5", "asc", "desc,asc",
    "name:sideways", "in:a,b", "gte:x", "neq:", "!", "%22%5Cud800%22",
]
QUERY_KEYS = [
    "limit", "marker", "sort_key", "sort_dir", "sort", "page_reverse", "fields",
    "changes-since", "changes-before", "all_tenants", "all_projects", "project_id",
    "tenant_id", "name", "status", "id", "deleted", "is_public", "minDisk", "minRam",
    "offset", "page", "fixed_ips", "ip_address", "member_of", "resources", "required",
    "in_tree", "limit[]", "tags", "tags-any", "not-tags", "visibility", "owner", "size_min",
    "created_at", "updated_at", "user_id", "domain_id", "enabled", "parent_id", "ip",
    "ip6", "flavor", "image", "host", "node", "locked", "availability_zone", "type",
    "start", "end", "detailed", "hypervisor_hostname_pattern", "with_servers", "include",
]
TOKENS = ["", "x", "gAAAAA", "gAAAAABx" + "A" * 300, "t" * 9000, "é", "a\tb",
          "gAAAAA" + "=" * 4]
MICROVERSIONS = {
    "compute": ["compute 2.1000", "compute 2.", "compute latest", "compute 2.96",
                "compute 3.0", "compute 2.-1", "compute " + "9" * 40 + ".1", "compute",
                "foo 2.1", "compute 2.1, compute 2.5", "compute 1.0", "compute 2.0",
                "compute 2.1e3", "compute ٢.٣"],
    "placement": ["placement 1.999", "placement 1.", "placement latest", "placement 2.0",
                  "placement " + "9" * 40 + ".1", "placement", "placement 1.0",
                  "placement 0.9", "placement 1.-5"],
}
LEGACY_MICROVERSIONS = ["2.1000", "latest", "2.", "x", "9" * 40, "2.96"]
CONTENT_TYPES = ["application/octet-stream", "text/html", "multipart/form-data; boundary=x",
                 "application/json; charset=latin-1", "application/json-patch+json",
                 "application/openstack-images-v2.1-json-patch", "x" * 500, "", "*/*",
                 "application/merge-patch+json"]


def dumps(value: Any) -> bytes:
    """``value`` as JSON, :class:`Raw` fragments spliced in verbatim."""
    raws: dict[str, str] = {}

    def swap(v: Any) -> Any:
        if isinstance(v, Raw):
            key = f"@@raw{len(raws)}@@"
            raws[key] = v.text
            return key
        if isinstance(v, dict):
            return {swap(k) if isinstance(k, Raw) else k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v

    text = json.dumps(swap(value))
    for key, raw in raws.items():
        text = text.replace(f'"{key}"', raw)
    return text.encode("utf-8", "surrogatepass")


def bad_value(rng: random.Random) -> Any:
    """One value that is wrong for most fields (a fresh copy: bodies are changed in place)."""
    if rng.random() < 0.35:
        return rng.choice(RAW_VALUES)
    return copy.deepcopy(rng.choice(PLAIN_VALUES))


def _paths(doc: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> list[tuple[Any, ...]]:
    """Every place in ``doc`` a value could be swapped (keys of objects, indexes of lists)."""
    out: list[tuple[Any, ...]] = []
    if depth > 6:
        return out
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(prefix + (k,))
            out.extend(_paths(v, prefix + (k,), depth + 1))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:5]):
            out.append(prefix + (i,))
            out.extend(_paths(v, prefix + (i,), depth + 1))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        doc = doc[step]
    if isinstance(doc, dict | list):
        doc[path[-1]] = value


def _delete(doc: Any, path: tuple[Any, ...]) -> None:
    for step in path[:-1]:
        doc = doc[step]
    if isinstance(doc, dict):
        doc.pop(path[-1], None)


def mutate_body(rng: random.Random, template: Any) -> tuple[bytes, str]:
    """A malformed variant of ``template`` (a plausible body): serialised bytes and a short
    description of what was done."""
    roll = rng.random()
    if roll < 0.08:
        raw = rng.choice([
            b"", b"null", b"[]", b"{}", b'"s"', b"1", b"{", b"{\"a\": }", b"\xff\xfe{}",
            b"{\"a\": \"\xed\xa0\x80\"}", b"{\"a\": \"\xc3\x28\"}", b"[" * 200000,
            b'{"a":' * 200000, b"\x00" * 10, b"{} {}", b"{'a': 1}", b"{\"a\": 01}",
        ])
        return raw, f"raw body {raw[:20]!r}"
    doc = json.loads(json.dumps(template)) if template is not None else {}
    if roll < 0.14:
        wrapper = next(iter(doc), "x") if isinstance(doc, dict) else "x"
        return dumps({wrapper: bad_value(rng)}), f"{wrapper}: bad value"
    spots = _paths(doc)
    changes: list[str] = []
    for _ in range(1 + (rng.random() < 0.3)):
        kind = rng.random()
        if spots and kind < 0.65:
            spot = rng.choice(spots)
            value = bad_value(rng)
            _set(doc, spot, value)
            changes.append(f"{'/'.join(map(str, spot))}={str(value)[:40]}")
            spots = _paths(doc)
        elif spots and kind < 0.8:
            spot = rng.choice(spots)
            _delete(doc, spot)
            changes.append(f"-{'/'.join(map(str, spot))}")
            spots = _paths(doc)
        else:
            target = doc
            if isinstance(doc, dict) and doc and isinstance(next(iter(doc.values())), dict):
                target = next(iter(doc.values()))
            if isinstance(target, dict):
                name = rng.choice(["zz_unknown", "id", "project_id", "links", "x" * 300,
                                   "user_id", "status", "created_at", "OS-EXT:x"])
                target[name] = bad_value(rng)
                changes.append(f"+{name}")
                spots = _paths(doc)
    return dumps(doc), "; ".join(changes) or "unchanged"


def bad_id(rng: random.Random) -> str:
    """A path segment that is no valid id (already percent-encoded)."""
    return rng.choice(BAD_IDS) if rng.random() < 0.9 else quote(str(uuid.uuid4()))


def bad_query(rng: random.Random, fields: list[str]) -> str:
    """A query string of 1-3 parameters with bad values (known keys and the resource's
    field names)."""
    parts = []
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(QUERY_KEYS + fields) if fields else rng.choice(QUERY_KEYS)
        value = rng.choice(QUERY_VALUES)
        parts.append(f"{quote(key, safe='[]')}={value if '%' in value else quote(value)}")
    return "&".join(parts)


def bad_headers(rng: random.Random, service: str, token: str) -> tuple[dict[str, str], str]:
    """Headers with one thing wrong (token, microversion or content type)."""
    headers = {"X-Auth-Token": token}
    roll = rng.random()
    if roll < 0.3:
        value = rng.choice(TOKENS + [token + "=", token[:-1], token + "x"])
        headers["X-Auth-Token"] = value
        return headers, "bad token"
    if roll < 0.7 and service in MICROVERSIONS:
        value = rng.choice(MICROVERSIONS[service])
        headers["OpenStack-API-Version"] = value
        if service == "compute" and rng.random() < 0.3:
            del headers["OpenStack-API-Version"]
            value = rng.choice(LEGACY_MICROVERSIONS)
            headers["X-OpenStack-Nova-API-Version"] = value
        return headers, f"microversion {value[:30]}"
    value = rng.choice(CONTENT_TYPES)
    headers["Content-Type"] = value
    return headers, f"content-type {value[:30]}"
