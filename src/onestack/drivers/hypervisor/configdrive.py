"""The config drive: an ISO 9660 image labelled ``config-2`` holding the instance metadata.

Layout (as Nova writes it): ``openstack/latest/{meta_data.json,network_data.json,
vendor_data.json,vendor_data2.json,user_data}``, the same under ``openstack/2012-08-10/``, and
``ec2/latest/meta-data.json`` (+ ``user-data``). The documents come from
``onestack.metadata.content.build_metadata`` — the same builder the metadata service uses.
Written with pycdlib (Rock Ridge + Joliet, so guests see the real lower-case names).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from onestack.metadata.content import build_metadata

LABEL = "config-2"


def write_iso(path: Path | str, files: dict[str, bytes], label: str = LABEL) -> None:
    """Write ``files`` (relative POSIX name -> bytes) as an ISO 9660 image at ``path``."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09", joliet=3, vol_ident=label)
    iso_dirs: dict[str, str] = {"": ""}
    for n, (name, data) in enumerate(sorted(files.items())):
        parent = ""
        for part in name.split("/")[:-1]:
            here = f"{parent}/{part}" if parent else part
            if here not in iso_dirs:
                iso_dirs[here] = f"{iso_dirs[parent]}/D{len(iso_dirs):06d}"
                iso.add_directory(iso_dirs[here], rr_name=part, joliet_path=f"/{here}")
            parent = here
        iso.add_fp(io.BytesIO(data), len(data), f"{iso_dirs[parent]}/F{n:06d}.;1",
                   rr_name=name.rsplit("/", 1)[-1], joliet_path=f"/{name}")
    tmp = f"{os.fspath(path)}.tmp"
    try:
        iso.write(tmp)
    finally:
        iso.close()
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def build_config_drive(path: Path | str, instance: dict[str, Any]) -> None:
    """Write the config drive of ``instance`` (a driver ``InstanceSpec``) to ``path``."""
    write_iso(path, build_metadata(instance).config_drive_files())

