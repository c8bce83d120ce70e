"""Console proxy: the token's forms in a request and the Origin check (``console/proxy.py``)."""

from __future__ import annotations

import pytest

from onestack.console.proxy import origin_allowed, token_from_request


@pytest.mark.parametrize(("query", "cookie", "token"), [
    ("token=abc", None, "abc"),
    ("path=%3Ftoken%3Dabc", None, "abc"),
    ("path=/%3Ftoken%3Dabc", None, "abc"),
    ("", "token=abc", "abc"),
    ("", "other=1; token=abc", "abc"),
    ("", "path=%3Ftoken%3Dabc", "abc"),  # Tempest copies the URL's query into a cookie
    ("token=q", "token=c", "q"),
    ("", 'bad"cookie; token=abc', "abc"),
    ("", None, None),
    ("path=%3Fnothing%3D1", "x=1", None),
])
def test_token_forms(query: str, cookie: str | None, token: str | None) -> None:
    assert token_from_request(query, cookie) == token


@pytest.mark.parametrize(("origin", "host", "allowed", "ok"), [
    (None, "127.0.0.1:6080", [], True),  # not a browser
    ("http://127.0.0.1:6080", "127.0.0.1:6080", [], True),
    ("https://console.example.org", "console.example.org:6080", [], True),
    ("http://CONSOLE.example.org", "console.example.org", [], True),
    ("http://evil.example.com", "127.0.0.1:6080", [], False),
    ("http://dash.example.org", "127.0.0.1:6080", ["dash.example.org"], True),
    ("http://dash.example.org", "127.0.0.1:6080", ["other.example.org"], False),
    ("null", "127.0.0.1:6080", [], False),
    ("file:///etc/passwd", "127.0.0.1:6080", [], False),
    ("ftp://127.0.0.1", "127.0.0.1:6080", [], False),
    ("http://[::1]:6080", "[::1]:6080", [], True),
    ("http://[bad", "127.0.0.1", [], False),
])
def test_origin_checks(origin: str | None, host: str, allowed: list[str], ok: bool) -> None:
    assert origin_allowed(origin, host, allowed) is ok
