"""Command line: ``python -m onestack.guestimage [--out DIR] [--force] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from onestack.guestimage.builder import build_guest_image
from onestack.guestimage.image import GuestImageError


def main(argv: list[str] | None = None) -> int:
    """Build (or reuse) the test guest image and print where it is."""
    parser = argparse.ArgumentParser(
        prog="build-guest-image",
        description="Build the onestack test guest (kernel + initramfs) from Debian packages.",
    )
    parser.add_argument("--out", type=Path, help="output directory (default: versioned cache)")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument(
        "--refresh-packages", action="store_true", help="download the .deb packages again"
    )
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    args = parser.parse_args(argv)
    try:
        image = build_guest_image(
            args.out, force=args.force, refresh_packages=args.refresh_packages
        )
    except GuestImageError as exc:
        print(f"build-guest-image: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    **image.manifest,
                    "kernel": str(image.kernel),
                    "pvh_kernel": str(image.pvh_kernel) if image.pvh_kernel else None,
                    "initrd": str(image.initrd),
                },
                indent=2,
                sort_keys=True,
            )
        )
    else:
        print(f"version  {image.version}")
        print(f"kernel   {image.kernel}")
        if image.pvh_kernel is not None:
            print(f"pvh      {image.pvh_kernel}")
        print(f"initrd   {image.initrd}")
        print(f"cmdline  {image.cmdline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
