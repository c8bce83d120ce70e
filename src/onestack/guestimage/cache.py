"""Where built guest images are cached, and under which version.

Outputs are cached per :func:`image_version` (:data:`IMAGE_VERSION` plus a digest of this
package's code and the guest scripts) in ``<cache>/<version>/``, where ``<cache>`` is
``$ONESTACK_GUEST_IMAGE_DIR`` or else
``${ONESTACK_DATA_DIR:-${XDG_DATA_HOME:-~/.local/share}/onestack}/cache/guest-image``; the
downloaded .debs are kept in ``<cache>/debs/``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from onestack.config import default_data_dir
from onestack.guestimage.guestfiles import DATA_FILES, read_data

#: Bump to force every cached image to be rebuilt (the input digest covers most changes).
IMAGE_VERSION = "1"


def default_cache_dir() -> Path:
    """Return the guest-image cache root (outputs per version, plus downloaded .debs).

    ``$ONESTACK_GUEST_IMAGE_DIR`` if set (lets tests that give each cloud its own temporary
    data directory share one image), else ``<data dir>/cache/guest-image``.
    """
    env = os.environ.get("ONESTACK_GUEST_IMAGE_DIR")
    if env:
        return Path(env).expanduser()
    return default_data_dir() / "cache" / "guest-image"


def image_version() -> str:
    """Return the version of the image this code builds: IMAGE_VERSION plus an input digest."""
    digest = hashlib.sha256()
    digest.update(IMAGE_VERSION.encode())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    for name in sorted(DATA_FILES):
        digest.update(name.encode() + b"\0" + read_data(name))
    return f"{IMAGE_VERSION}-{digest.hexdigest()[:12]}"


def default_output_dir() -> Path:
    """Return the default output directory for the current image version."""
    return default_cache_dir() / image_version()
