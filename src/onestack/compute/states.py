"""Instance state machine: vm_state, task_state, power_state and the API status they show."""

from __future__ import annotations

# vm states
ACTIVE = "active"
BUILDING = "building"
PAUSED = "paused"
SUSPENDED = "suspended"
STOPPED = "stopped"
RESCUED = "rescued"
RESIZED = "resized"
SOFT_DELETED = "soft-delete"
DELETED = "deleted"
ERROR = "error"
SHELVED = "shelved"
SHELVED_OFFLOADED = "shelved_offloaded"

# power states (as numbers, like Nova)
NOSTATE, RUNNING, PAUSED_P, SHUTDOWN, CRASHED, SUSPENDED_P = 0, 1, 3, 4, 6, 7
POWER_NAMES = {0: "NOSTATE", 1: "RUNNING", 3: "PAUSED", 4: "SHUTDOWN", 6: "CRASHED",
               7: "SUSPENDED"}

# allowed vm_states per action (task_state must be None unless stated otherwise)
ALLOW_SOFT_REBOOT = (ACTIVE,)
ALLOW_HARD_REBOOT = (ACTIVE, STOPPED, PAUSED, SUSPENDED, ERROR)
ACTION_VM_STATES: dict[str, tuple[str, ...]] = {
    "reboot": ALLOW_HARD_REBOOT,
    "stop": (ACTIVE, ERROR),
    "start": (STOPPED,),
    "pause": (ACTIVE,),
    "unpause": (PAUSED,),
    "suspend": (ACTIVE,),
    "resume": (SUSPENDED,),
    "rescue": (ACTIVE, STOPPED, ERROR),
    "unrescue": (RESCUED,),
    "resize": (ACTIVE, STOPPED),
    "confirmResize": (RESIZED,),
    "revertResize": (RESIZED,),
    "rebuild": (ACTIVE, STOPPED, ERROR),
    "createImage": (ACTIVE, STOPPED, PAUSED, SUSPENDED),
    "createBackup": (ACTIVE, STOPPED, PAUSED, SUSPENDED),
    "shelve": (ACTIVE, STOPPED, PAUSED, SUSPENDED),
    "shelveOffload": (SHELVED,),
    "unshelve": (SHELVED, SHELVED_OFFLOADED),
    "migrate": (ACTIVE, STOPPED),
    "os-migrateLive": (ACTIVE, PAUSED),
    "restore": (SOFT_DELETED,),
    "forceDelete": (SOFT_DELETED,),
    "trigger_crash_dump": (ACTIVE, PAUSED, RESCUED, RESIZED, ERROR),
}

_STATUS = {
    BUILDING: {"default": "BUILD"},
    STOPPED: {"default": "SHUTOFF", "resize_prep": "RESIZE", "resize_migrating": "RESIZE",
              "resize_migrated": "RESIZE", "resize_finish": "RESIZE",
              "rebuilding": "REBUILD", "rebuild_spawning": "REBUILD"},
    ACTIVE: {"default": "ACTIVE", "rebooting": "REBOOT", "reboot_pending": "REBOOT",
             "reboot_started": "REBOOT", "rebooting_hard": "HARD_REBOOT",
             "reboot_pending_hard": "HARD_REBOOT", "reboot_started_hard": "HARD_REBOOT",
             "updating_password": "PASSWORD", "rebuilding": "REBUILD",
             "rebuild_block_device_mapping": "REBUILD", "rebuild_spawning": "REBUILD",
             "migrating": "MIGRATING", "resize_prep": "RESIZE", "resize_migrating": "RESIZE",
             "resize_migrated": "RESIZE", "resize_finish": "RESIZE"},
    RESIZED: {"default": "VERIFY_RESIZE", "resize_reverting": "REVERT_RESIZE"},
    PAUSED: {"default": "PAUSED", "migrating": "MIGRATING"},
    SUSPENDED: {"default": "SUSPENDED"},
    RESCUED: {"default": "RESCUE"},
    ERROR: {"default": "ERROR", "rebuilding": "REBUILD"},
    DELETED: {"default": "DELETED"},
    SOFT_DELETED: {"default": "SOFT_DELETED"},
    SHELVED: {"default": "SHELVED"},
    SHELVED_OFFLOADED: {"default": "SHELVED_OFFLOADED"},
}

#: API status -> vm_states (the ``status`` list filter).
STATUS_VM_STATES: dict[str, list[str]] = {}
for _vm, _map in _STATUS.items():
    STATUS_VM_STATES.setdefault(_map["default"], []).append(_vm)


def status(vm_state: str, task_state: str | None) -> str:
    """The API ``status`` of an instance."""
    table = _STATUS.get(vm_state)
    if table is None:
        return "UNKNOWN"
    return table.get(task_state or "default", table["default"])
