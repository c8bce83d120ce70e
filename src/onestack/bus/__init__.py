"""The message bus between API services, the scheduler and agents."""

from onestack.bus.base import Bus, BusError, RemoteError
from onestack.bus.factory import make_bus

__all__ = ["Bus", "BusError", "RemoteError", "make_bus"]
