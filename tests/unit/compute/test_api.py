"""``/v2.1/{project_id}/...``: the URL's project must be the token's (Nova: 400)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest
from onestack.compute.api import check_url_project
from onestack.compute.microversions import SCOPE_KEY


def _req(url_project: str | None, token_project: str | None) -> Any:
    scope: dict[str, Any] = {}
    if url_project is not None:
        scope[SCOPE_KEY + ".project"] = url_project
    return SimpleNamespace(request=SimpleNamespace(scope=scope),
                           ctx=RequestContext(user_id="u", project_id=token_project))


def test_own_project_and_plain_urls_pass() -> None:
    check_url_project(_req("a" * 32, "a" * 32))
    check_url_project(_req(None, "a" * 32))
    check_url_project(_req(None, None))


@pytest.mark.parametrize("token_project", ["b" * 32, None])
def test_another_project_is_a_400(token_project: str | None) -> None:
    with pytest.raises(BadRequest) as err:
        check_url_project(_req("a" * 32, token_project))
    assert err.value.message == (f"Malformed request URL: URL's project_id '{'a' * 32}' "
                                 f"doesn't match Context's project_id '{token_project}'")
