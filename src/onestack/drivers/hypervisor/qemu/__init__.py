"""The QEMU hypervisor driver (``driver.py``: ``QemuDriver``) and its parts: the host it runs
on and the KVM probe (``host.py``), command-line pieces (``cmdline.py``), the hot-plug of
volumes (``disks.py``) and NICs (``nics.py``), and the QMP client (``qmp.py``)."""

from onestack.drivers.hypervisor.qemu.driver import QemuDriver, driver_options
from onestack.drivers.hypervisor.qemu.host import available

__all__ = ["QemuDriver", "available", "driver_options"]
