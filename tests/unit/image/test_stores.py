"""The set of image stores (``image/stores.py``): the read-only web store."""

from __future__ import annotations

from pathlib import Path

import pytest

from onestack.common.errors import BadRequest
from onestack.drivers.imagestore.base import StoreError
from onestack.drivers.imagestore.file import FileStore
from onestack.image.fetch import UrlPolicy
from onestack.image.stores import StoreSet


def test_web_store_only_with_an_allow_list(tmp_path: Path) -> None:
    plain = StoreSet(FileStore(tmp_path / "a"))
    assert plain.web is None and plain.ids() == ["file"]
    web = StoreSet(FileStore(tmp_path / "b"), "", UrlPolicy("http://127.0.0.1:1/"))
    assert web.ids() == ["file", "web"] and web.writable_ids() == ["file"]
    assert web.store_id_of("http://127.0.0.1:1/x") == "web"
    assert {"id": "web", "description": web.web.description if web.web else "",
            "read-only": "true"} in web.info()
    with pytest.raises(BadRequest):
        web.get("web")  # nothing can be written there
    with pytest.raises(StoreError):
        list(web.open("http://127.0.0.1:2/x"))  # not allowed: never fetched
