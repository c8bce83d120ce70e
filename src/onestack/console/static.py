"""The web pages of the console proxy: noVNC when it is installed, else a small page of ours.

noVNC (the HTML5 VNC client) is not bundled. When a noVNC directory is configured, or found
at one of :data:`NOVNC_DIRS` (``scripts/install`` unpacks Debian's into the virtual
environment; or a system's ``novnc`` package), its
files are served as they are (``vnc.html``, ``vnc_lite.html``; ``vnc_auto.html``, the name
older Nova releases used, falls back to ``vnc_lite.html``). Without noVNC the console pages
answer a short page that says where the WebSocket is and how to get the viewer.
"""

from __future__ import annotations

import mimetypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

NOVNC_DIRS = (os.path.join(sys.prefix, "share", "novnc"),  # scripts/install-novnc
              "/usr/share/novnc", "/usr/share/webapps/novnc")
CONSOLE_PAGES = ("vnc.html", "vnc_lite.html", "vnc_auto.html")
_ALIASES = {"vnc_auto.html": "vnc_lite.html"}
_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
          ".html": "text/html; charset=utf-8", ".json": "application/json",
          ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon",
          ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf",
          ".oga": "audio/ogg", ".mp3": "audio/mpeg"}

FALLBACK_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>onestack console</title></head>
<body>
<h1>onestack console proxy</h1>
<p>This proxy relays the guest's VNC console over a WebSocket at <code id="ws"></code>.</p>
<p>The noVNC web client is not installed on this host. Install it
(<code>scripts/install-novnc</code> in onestack's checkout) or set
<code>console_novnc_dir</code> to a noVNC checkout to get an in-browser
viewer; any noVNC/websockify-compatible VNC client can use the WebSocket meanwhile.</p>
<script>
  // The WebSocket a VNC-over-WebSocket client opens for this console URL.
  const q = new URLSearchParams(window.location.search);
  const path = q.get("path") || ("?token=" + (q.get("token") || ""));
  const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  document.getElementById("ws").textContent =
    scheme + window.location.host + "/" + path.replace(/^\\//, "");
</script>
</body>
</html>
"""


def find_novnc(configured: str = "") -> Path | None:
    """The noVNC directory to serve: ``configured`` when set (must exist), else the first
    of :data:`NOVNC_DIRS` that holds ``vnc_lite.html``, else None."""
    candidates = [configured] if configured else list(NOVNC_DIRS)
    for cand in candidates:
        path = Path(cand).expanduser()
        if (path / "vnc_lite.html").is_file() or (path / "vnc.html").is_file():
            return path.resolve()
    return None


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str


class StaticPages:
    """Looks up the file for a request path (never outside the noVNC directory)."""

    def __init__(self, novnc_dir: Path | None) -> None:
        self.root = novnc_dir.resolve() if novnc_dir is not None else None

    def get(self, path: str) -> StaticFile | None:
        """The file for URL ``path`` (e.g. ``/vnc_lite.html``), or None (404)."""
        rel = path.lstrip("/")
        if self.root is None:
            if rel in CONSOLE_PAGES:
                return StaticFile(FALLBACK_PAGE.encode(), _TYPES[".html"])
            return None
        if not rel or "\x00" in rel:
            return None
        target = (self.root / rel).resolve()
        if rel in _ALIASES and not target.is_file():
            target = (self.root / _ALIASES[rel]).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            return None
        try:
            body = target.read_bytes()
        except OSError:
            return None
        ctype = _TYPES.get(target.suffix.lower()) or (
            mimetypes.guess_type(target.name)[0] or "application/octet-stream")
        return StaticFile(body, ctype)
