"""The noVNC pages the console proxy serves, or its fallback page (``console/static.py``)."""

from __future__ import annotations

from pathlib import Path

from onestack.console.static import FALLBACK_PAGE, StaticPages, find_novnc


def test_fallback_page_without_novnc() -> None:
    pages = StaticPages(None)
    for name in ("/vnc_lite.html", "/vnc_auto.html", "/vnc.html"):
        page = pages.get(name)
        assert page is not None and page.body == FALLBACK_PAGE.encode()
        assert "noVNC" in FALLBACK_PAGE and "<script" in FALLBACK_PAGE
    assert pages.get("/core/rfb.js") is None


def test_novnc_directory_is_served_and_contained(tmp_path: Path) -> None:
    root = tmp_path / "novnc"
    (root / "core").mkdir(parents=True)
    (root / "vnc_lite.html").write_text("<html>noVNC lite<script></script></html>")
    (root / "core" / "rfb.js").write_text("export default 1;")
    (tmp_path / "secret.txt").write_text("no")
    assert find_novnc(str(root)) == root.resolve()
    assert find_novnc(str(tmp_path / "missing")) is None
    pages = StaticPages(root)
    lite = pages.get("/vnc_lite.html")
    assert lite is not None and b"noVNC lite" in lite.body
    alias = pages.get("/vnc_auto.html")  # the old name falls back to vnc_lite.html
    assert alias is not None and alias.body == lite.body
    js = pages.get("/core/rfb.js")
    assert js is not None and js.content_type == "text/javascript"
    for bad in ("/../secret.txt", "/core/../../secret.txt", "/", "/missing.js", "/core"):
        assert pages.get(bad) is None, bad
