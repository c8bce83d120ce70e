"""Filtering of the URLs images may be fetched from (``image/fetch.py``)."""

from __future__ import annotations

import pytest

from onestack.common.errors import BadRequest
from onestack.image.fetch import UrlPolicy


def test_url_policy_off_by_default() -> None:
    policy = UrlPolicy("")
    assert not policy.enabled
    with pytest.raises(BadRequest, match="does not pass filtering"):
        policy.check("http://127.0.0.1/x")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/img/a.raw",
    "HTTP://127.0.0.1:8080/img/",
    "http://127.0.0.1:8080/img/a?x=1",
    "https://mirror.example:443/pub/c.img",
    "https://mirror.example/pub/d.img",
])
def test_url_policy_allows(url: str) -> None:
    policy = UrlPolicy("http://127.0.0.1:8080/img/, https://mirror.example/pub/")
    assert policy.enabled
    assert policy.check(url).url == url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8081/img/a.raw",           # other port
    "http://127.0.0.1:8080/other/a.raw",         # outside the path prefix
    "http://127.0.0.1:8080/imgx",                # prefix must match whole
    "http://localhost:8080/img/a.raw",           # other host name
    "http://user@127.0.0.1:8080/img/a.raw",      # user info
    "http://127.0.0.1:8080@evil.example/img/",   # user info trick
    "ftp://127.0.0.1:8080/img/a.raw",            # scheme
    "file:///etc/passwd",
    "http:///img/a.raw",                         # no host
    "https://mirror.example:8443/pub/x",         # default port differs
    "http://mirror.example/pub/x",               # http vs https
    "http://127.0.0.1:8080/img/a\r\nX: y",       # header injection
    "",
    42,
])
def test_url_policy_refuses(url: object) -> None:
    policy = UrlPolicy("http://127.0.0.1:8080/img/, https://mirror.example/pub/")
    with pytest.raises(BadRequest, match="does not pass filtering"):
        policy.check(url)


def test_bad_allow_setting_fails_early() -> None:
    with pytest.raises(ValueError):
        UrlPolicy("gopher://x/")
