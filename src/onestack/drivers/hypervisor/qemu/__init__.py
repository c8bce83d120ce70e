"""The QEMU hypervisor driver (``driver.py``: ``QemuDriver``, the contract's face) and its
parts, one concept each: the host it runs on and the KVM probe (``host.py``), the guests'
records (``guests.py``) and QEMU processes (``process.py``), the command line
(``cmdline.py``), images and local disks (``images.py``), spawn, destroy and power
(``lifecycle.py``), suspend and resume (``suspend.py``), rescue (``rescue.py``), resize
(``resize.py``), snapshots (``snapshot.py``), the hot-plug of NICs and volumes
(``hotplug.py`` over ``nics.py`` and ``disks.py``), consoles (``consoles.py``),
diagnostics (``diagnostics.py``) and the QMP client (``qmp.py``)."""

from onestack.drivers.hypervisor.qemu.driver import QemuDriver, driver_options
from onestack.drivers.hypervisor.qemu.host import available

__all__ = ["QemuDriver", "available", "driver_options"]
