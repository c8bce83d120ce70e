"""Hypervisor drivers: ``base.py`` is the contract, ``fake.py`` its in-memory twin."""

from __future__ import annotations

import importlib
import logging

from onestack.drivers.hypervisor.base import HypervisorDriver

LOG = logging.getLogger(__name__)


def load_driver(name: str, host: str, **options: object) -> HypervisorDriver:
    """The driver called ``name`` (``fake``, ``qemu`` or ``auto``) for ``host``.

    ``qemu``/``auto`` fall back to the fake driver, with a warning, while no QEMU driver
    module exists; ``auto`` also falls back when QEMU is not usable on this host.
    """
    if name in ("qemu", "auto"):
        try:
            module = importlib.import_module("onestack.drivers.hypervisor.qemu")
        except ImportError:
            LOG.warning("compute driver %r requested but no QEMU driver is installed; "
                        "using the fake driver", name)
        else:
            driver_cls = getattr(module, "QemuDriver", None)
            usable = getattr(module, "available", lambda: True)
            if driver_cls is not None and (name == "qemu" or usable()):
                return driver_cls(host=host, **options)  # type: ignore[no-any-return]
            LOG.warning("QEMU is not usable here; using the fake driver")
    elif name != "fake":
        raise ValueError(f"unknown compute driver {name!r} (fake, qemu, auto)")
    from onestack.drivers.hypervisor.fake import FakeDriver

    return FakeDriver(host=host, **options)  # type: ignore[arg-type]
