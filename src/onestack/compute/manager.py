"""Compute business logic: the only place compute state changes.

The API, the scheduler and the compute agents all call this manager (agents on other hosts
run their own instance of it against the shared database). Instances are handed around as
plain dicts (``InstanceDict``) so they cross the bus unchanged.

State changes of instances go through ``begin_task`` (API side: atomically check the allowed
vm_state/task_state and set the new task_state, 409 otherwise) and ``finish_task`` (agent side:
write the outcome only if the instance is still in the expected task_state).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, Conflict, Forbidden, NotFound
from onestack.common.ids import new_uuid
from onestack.common.limits import LimitSource
from onestack.common.timeutils import utcnow
from onestack.compute import quotas, states
from onestack.compute.claims import ClaimStore
from onestack.compute.flavors import FlavorStore
from onestack.compute.groups import GroupStore
from onestack.compute.hosts import HostStore
from onestack.compute.instance_actions import ActionLog, action_values, new_action, record_event_in
from onestack.compute.keypairs import KeypairStore
from onestack.compute.migrations import MigrationStore
from onestack.compute.placement import ComputePlacement
from onestack.compute.quota_store import QuotaStore
from onestack.compute.store import looks_like_uuid
from onestack.db.compute import (
    Allocation,
    ComputeNode,
    Instance,
    InstanceAction,
    InstanceTag,
    ServerGroupMember,
)
from onestack.db.console import ConsoleAuthToken
from onestack.db.engine import Database

InstanceDict = dict[str, Any]
T = TypeVar("T")

# Core tables and prebuilt statements of the hot paths (boot, show, delete): no ORM unit
# of work there, which costs several times more per statement than the SQL itself.
_I = Instance.__table__
_TAG = InstanceTag.__table__
_MEMBER = ServerGroupMember.__table__
_CONSOLE = ConsoleAuthToken.__table__
_ACTION = InstanceAction.__table__
_NODE = ComputeNode.__table__
_ALLOC = Allocation.__table__
_SEL_INST = select(_I).where(_I.c.uuid == bindparam("uuid"))
_SEL_TAGS = select(_TAG.c.tag).where(_TAG.c.instance_uuid == bindparam("uuid"))
_SEL_GROUP = select(_MEMBER.c.group_uuid).where(_MEMBER.c.instance_uuid == bindparam("uuid"))
_SEL_LAST_ACTION = (select(_ACTION.c.id, _ACTION.c.events)
                    .where(_ACTION.c.instance_uuid == bindparam("uuid"))
                    .order_by(_ACTION.c.id.desc()).limit(1))
_SEL_HOST = select(_I.c.host).where(_I.c.uuid == bindparam("uuid"))
_SEL_ALLOCS = select(_ALLOC).where(_ALLOC.c.instance_uuid == bindparam("uuid"))

#: Serialises this process's compute writes on SQLite (see ``ComputeManager.serial``).
_SQLITE_WRITES = threading.RLock()


INSTANCE_SORT_KEYS = ("created_at", "display_name", "updated_at", "uuid", "vm_state",
                      "task_state", "power_state", "launched_at", "terminated_at", "host",
                      "node", "image_ref", "project_id", "user_id", "availability_zone",
                      "key_name", "hostname", "locked", "launch_index", "display_description",
                      "instance_type_id", "access_ip_v4", "access_ip_v6", "config_drive",
                      "kernel_id", "ramdisk_id", "root_device_name", "progress", "vcpus",
                      "memory_mb", "root_gb", "ephemeral_gb", "reservation_id", "id")


def _inst_from_row(r: Any, tags: list[str] | None = None) -> InstanceDict:
    """``_inst_dict`` of a Core row mapping of ``compute_instance``."""
    return {
        "uuid": r["uuid"], "name": r["display_name"], "description": r["display_description"],
        "project_id": r["project_id"], "user_id": r["user_id"], "host": r["host"],
        "node": r["node"], "flavor": dict(r["flavor"] or {}), "old_flavor": r["old_flavor"],
        "new_flavor": r["new_flavor"], "vcpus": r["vcpus"], "memory_mb": r["memory_mb"],
        "root_gb": r["root_gb"], "image_ref": r["image_ref"], "vm_state": r["vm_state"],
        "task_state": r["task_state"], "power_state": r["power_state"],
        "key_name": r["key_name"], "key_data": r["key_data"], "user_data": r["user_data"],
        "metadata": dict(r["metadata"] or {}),
        "system_metadata": dict(r["system_metadata"] or {}),
        "locked": r["locked"], "locked_by": r["locked_by"], "locked_reason": r["locked_reason"],
        "availability_zone": r["availability_zone"], "config_drive": r["config_drive"],
        "access_ip_v4": r["access_ip_v4"], "access_ip_v6": r["access_ip_v6"],
        "hostname": r["hostname"], "launch_index": r["launch_index"],
        "reservation_id": r["reservation_id"], "progress": r["progress"], "fault": r["fault"],
        "launched_at": r["launched_at"], "terminated_at": r["terminated_at"],
        "created_at": r["created_at"], "updated_at": r["updated_at"], "deleted": r["deleted"],
        "deleted_at": r["deleted_at"], "tags": sorted(tags or []),
    }


#: ORM attribute of each ``compute_instance`` column (only ``metadata`` differs: ``meta``).
_INST_ATTRS = {col.name: key for key, col in Instance.__mapper__.columns.items()}


def _inst_dict(row: Instance, tags: list[str] | None = None) -> InstanceDict:
    """``_inst_from_row`` of an ORM instance."""
    return _inst_from_row({name: getattr(row, key) for name, key in _INST_ATTRS.items()}, tags)


def _task_matches(expected: str | Sequence[str | None] | None) -> Any:
    """SQL condition: ``task_state`` is one of ``expected`` (None meaning NULL)."""
    wanted = list(expected) if isinstance(expected, list | tuple) else [expected]
    values = [v for v in wanted if v is not None]
    conds = []
    if values:
        conds.append(_I.c.task_state.in_(values))
    if None in wanted:
        conds.append(_I.c.task_state.is_(None))
    return or_(*conds) if conds else _I.c.task_state.is_(None)


class ComputeManager(FlavorStore, KeypairStore, HostStore, ClaimStore, GroupStore, QuotaStore,
                     MigrationStore, ActionLog):
    """Compute state: instances and their state machine here; the record stores it is made
    of in modules of their own: flavors, key pairs, hosts (services, nodes, aggregates),
    claims, server groups, quotas and usage, migrations, the action log."""

    def __init__(self, db: Database, default_az: str = "nova",
                 placement: ComputePlacement | None = None,
                 max_instances_per_request: int = 1000) -> None:
        """``placement``: a ``PlacementManager``; when given, every claim is made there
        (atomic, never oversubscribing) and the compute node counters only mirror it.
        ``max_instances_per_request``: the most instances one ``POST /servers`` creates,
        whatever its ``max_count`` and the project's quota (unlimited quota included)."""
        self.db = db
        self.max_instances_per_request = max(1, max_instances_per_request)
        self.placement = placement
        self._node_uuids: dict[int, str] = {}
        self.default_az = default_az
        #: Keystone's unified limits as the quota source (None: os-quota-sets values).
        self.unified_limits: LimitSource | None = None
        #: Called after a change to services, nodes or aggregates (the scheduler drops its
        #: cached host view; other processes see the change at their next refresh).
        self.host_listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def serial(self) -> Iterator[None]:
        """On SQLite, queue this process's compute writes on a fair in-process lock.

        SQLite allows one writer; threads that collide on its lock back off in sleeps of up
        to 100 ms, which under concurrency costs far more than the writes themselves.
        Waiting here instead hands the lock over immediately. Other backends: no-op.
        """
        if self.db.backend != "sqlite":
            yield
            return
        with _SQLITE_WRITES:
            yield

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """What every write runs in: ``serial``, integrity errors becoming 409."""
        try:
            with self.serial():
                yield
        except IntegrityError as exc:
            raise Conflict("Conflict occurred while storing data.") from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction; integrity errors become 409."""
        with self._writing(), self.db.transaction() as s:
            yield s

    @contextlib.contextmanager
    def core_write(self) -> Iterator[Connection]:
        """A Core write transaction (hot paths); integrity errors become 409."""
        with self._writing(), self.db.connect() as c:
            yield c


    # ================================================================== instances
    def create_instances(self, ctx: RequestContext, spec: dict[str, Any],
                         count: int, min_count: int) -> list[InstanceDict]:
        """Record ``count`` new instances (BUILD/scheduling) after the quota check.

        ``spec`` holds the validated request: name, flavor (dict), image_ref, image (dict),
        key_name/key_data, user_data, metadata, availability_zone, config_drive, tags,
        access_ip_v4/6, description, hostname, group (server group uuid), system_metadata.
        All rows are written in one transaction with the quota check, so a refused request
        leaves nothing behind. When fewer than ``count`` but at least ``min_count`` fit, that
        many are created (Nova's behaviour); never more than ``max_instances_per_request``.
        """
        flavor = spec["flavor"]
        project = ctx.project_id or ""
        now = utcnow()
        reservation = "r-" + new_uuid()[:8]
        meta = dict(spec.get("metadata") or {})
        with self.core_write() as c:
            limits = quotas.project_limits(c, project, ctx.user_id, self.unified_limits)
            if 0 <= limits["metadata_items"] < len(meta):
                raise Forbidden(f"Quota exceeded for metadata_items: Requested {len(meta)}, "
                                f"but already used 0 of {limits['metadata_items']} "
                                "metadata_items")
            used = quotas.usage(c, project, groups=False)
            n = quotas.instances_that_fit(limits, used, flavor, min_count, count,
                                          self.max_instances_per_request)
            group = spec.get("group")
            if group:
                members = c.execute(select(func.count()).select_from(_MEMBER).where(
                    _MEMBER.c.group_uuid == group)).scalar() or 0
                gl = limits["server_group_members"]
                if gl >= 0 and members + n > gl:
                    raise quotas.OverQuota("Quota exceeded, too many servers in group")
            tags = list(spec.get("tags") or [])
            rows, tag_rows, member_rows, actions = [], [], [], []
            for i in range(n):
                name = spec["name"]
                if n > 1 and spec.get("multi_name", True):
                    name = f"{spec['name']}-{i + 1}"
                uuid = new_uuid()
                rows.append({
                    "uuid": uuid, "display_name": name,
                    "display_description": spec.get("description"), "project_id": project,
                    "user_id": ctx.user_id or "", "host": None, "node": None,
                    "flavor": flavor, "old_flavor": None, "new_flavor": None,
                    "vcpus": flavor["vcpus"], "memory_mb": flavor["memory_mb"],
                    "root_gb": flavor["root_gb"], "image_ref": spec.get("image_ref") or "",
                    "vm_state": states.BUILDING, "task_state": "scheduling",
                    "power_state": states.NOSTATE, "key_name": spec.get("key_name"),
                    "key_data": spec.get("key_data"), "user_data": spec.get("user_data"),
                    "metadata": meta, "system_metadata": dict(spec.get("system_metadata") or {}),
                    "locked": False, "locked_by": None, "locked_reason": None,
                    "availability_zone": spec.get("availability_zone"),
                    "config_drive": "True" if spec.get("config_drive") else "",
                    "access_ip_v4": spec.get("access_ip_v4"),
                    "access_ip_v6": spec.get("access_ip_v6"),
                    "hostname": spec.get("hostname") or _hostname(name), "launch_index": i,
                    "reservation_id": reservation, "progress": 0, "fault": None,
                    "launched_at": None, "terminated_at": None, "created_at": now,
                    "updated_at": now, "deleted": False, "deleted_at": None})
                tag_rows += [{"instance_uuid": uuid, "tag": t} for t in tags]
                if group:
                    member_rows.append({"group_uuid": group, "instance_uuid": uuid})
                actions.append(action_values(uuid, "create", ctx, now))
            c.execute(insert(_I), rows)
            if tag_rows:
                c.execute(insert(_TAG), tag_rows)
            if member_rows:
                c.execute(insert(_MEMBER), member_rows)
            c.execute(insert(_ACTION), actions)
        if self.db.backend != "sqlite":
            self._recheck_quota(project, limits, rows, flavor)
        return [_inst_from_row(r, tags) for r in rows]

    def _recheck_quota(self, project: str, limits: dict[str, int],
                       rows: list[dict[str, Any]], flavor: dict[str, Any]) -> None:
        """Nova's quota recheck, for databases that run transactions side by side: two
        requests of one project can each pass the check before either commits. Counted
        again after the commit (a fresh snapshot sees both), a project over its limit gets
        this request's instances removed and the usual 403 (two racing requests may both be
        refused; never is the quota exceeded). SQLite serialises writers: no race there."""
        if all(limits.get(r, -1) < 0 for r in ("instances", "cores", "ram")):
            return
        with self.db.connect(readonly=True) as c:
            used = quotas.usage(c, project, groups=False)
        n = len(rows)
        wanted = {"instances": n, "cores": n * flavor["vcpus"], "ram": n * flavor["memory_mb"]}
        if not any(0 <= limits.get(r, -1) < used[r] for r in wanted):
            return
        self.purge_instances([r["uuid"] for r in rows])
        others = {r: used[r] - wanted[r] for r in wanted}
        quotas.check(limits, others, wanted)  # raises with Nova's message
        raise quotas.OverQuota("Quota exceeded for instances: the project's usage changed "
                               "while this request was being recorded")

    def purge_instances(self, uuids: Sequence[str]) -> None:
        """Remove instances recorded by a create that failed afterwards (their ports could
        not be set up) before anything was cast for them (no claims exist yet): rows, tags,
        group memberships and actions, as if never created."""
        if not uuids:
            return
        ids = list(uuids)
        with self.write() as s:
            s.execute(delete(InstanceTag).where(InstanceTag.instance_uuid.in_(ids)))
            s.execute(delete(ServerGroupMember).where(
                ServerGroupMember.instance_uuid.in_(ids)))
            s.execute(delete(InstanceAction).where(InstanceAction.instance_uuid.in_(ids)))
            s.execute(delete(Instance).where(Instance.uuid.in_(ids)))

    def update_system_metadata(self, uuid: str, **items: Any) -> None:
        """Merge keys into an instance's system_metadata (e.g. the agent's port cache
        ``networks``) without overwriting the others."""
        with self.write() as s:
            row = s.get(Instance, uuid)
            if row is None:
                return
            sm = dict(row.system_metadata or {})
            sm.update(items)
            row.system_metadata = sm

    def _tags(self, s: Session, uuids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for i in range(0, len(uuids), 500):
            chunk = uuids[i:i + 500]
            for u, t in s.execute(select(InstanceTag.instance_uuid, InstanceTag.tag).where(
                    InstanceTag.instance_uuid.in_(chunk))):
                out.setdefault(u, []).append(t)
        return out

    @staticmethod
    def _visible_row(ctx: RequestContext | None, c: Connection, uuid: str,
                     deleted_ok: bool = False) -> Any:
        """The Core row mapping of an instance ``ctx`` may see (404 otherwise)."""
        r = c.execute(_SEL_INST, {"uuid": uuid}).mappings().first() \
            if looks_like_uuid(uuid) else None
        if (r is None or (r["deleted"] and not deleted_ok)
                or (ctx is not None and not ctx.is_admin and r["project_id"] != ctx.project_id)):
            raise NotFound(f"Instance {uuid} could not be found.")
        return r

    def get_instance(self, ctx: RequestContext | None, uuid: str,
                     deleted_ok: bool = False) -> InstanceDict:
        """One instance (404 when unknown, deleted or in another project)."""
        with self.db.connect(readonly=True) as c:
            r = self._visible_row(ctx, c, uuid, deleted_ok)
            return _inst_from_row(r, list(c.execute(_SEL_TAGS, {"uuid": uuid}).scalars()))

    def show_instance(self, ctx: RequestContext | None, uuid: str,
                      ) -> tuple[InstanceDict, str | None]:
        """One instance and its server group uuid (None: in no group), in one read."""
        with self.db.connect(readonly=True) as c:
            r = self._visible_row(ctx, c, uuid)
            tags = list(c.execute(_SEL_TAGS, {"uuid": uuid}).scalars())
            group = c.execute(_SEL_GROUP, {"uuid": uuid}).scalar()
            return _inst_from_row(r, tags), group

    def list_instances(self, ctx: RequestContext, filters: dict[str, Any],
                       sort: list[tuple[str, str]], limit: int | None,
                       marker: str | None) -> list[InstanceDict]:
        """Instances visible to ``ctx`` matching ``filters`` (already validated by the API).

        Filters: project_id (None: every project, admin only), user_id, name (regex),
        status (list of vm_states), host, node, image, flavor (flavor id), changes-since /
        changes-before, deleted, ip, tags/tags-any/not-tags/not-tags-any, locked,
        availability_zone, reservation_id, key_name, uuid, task_state, power_state.
        """
        with self.db.reader() as s:
            q = select(Instance)
            conds: list[Any] = []
            if filters.get("project_id") is not None:
                conds.append(Instance.project_id == filters["project_id"])
            if "changes-since" in filters or "changes-before" in filters:
                if "changes-since" in filters:
                    conds.append(Instance.updated_at >= filters["changes-since"])
                if "changes-before" in filters:
                    conds.append(Instance.updated_at <= filters["changes-before"])
                if not filters.get("deleted", True):
                    conds.append(Instance.deleted.is_(False))
            elif filters.get("deleted"):
                conds.append(Instance.deleted.is_(True))
            else:
                conds.append(Instance.deleted.is_(False))
            simple = {"user_id": Instance.user_id, "host": Instance.host,
                      "node": Instance.node, "image": Instance.image_ref,
                      "availability_zone": Instance.availability_zone,
                      "reservation_id": Instance.reservation_id,
                      "key_name": Instance.key_name, "uuid": Instance.uuid,
                      "task_state": Instance.task_state,
                      "power_state": Instance.power_state, "locked": Instance.locked,
                      "config_drive": Instance.config_drive,
                      "access_ip_v4": Instance.access_ip_v4,
                      "access_ip_v6": Instance.access_ip_v6,
                      "launch_index": Instance.launch_index,
                      "hostname": Instance.hostname, "progress": Instance.progress}
            for key, col in simple.items():
                if key in filters and filters[key] is not None:
                    val = filters[key]
                    conds.append(col.in_(val) if isinstance(val, list) else col == val)
            if filters.get("status") is not None:
                conds.append(Instance.vm_state.in_(filters["status"]))
            if filters.get("vm_state") is not None:
                conds.append(Instance.vm_state.in_(filters["vm_state"]))
            if filters.get("flavor") is not None:
                conds.append(Instance.flavor["id"].as_string() == str(filters["flavor"]))
            for t in filters.get("tags") or []:
                conds.append(Instance.uuid.in_(select(InstanceTag.instance_uuid).where(
                    InstanceTag.tag == t)))
            if filters.get("tags-any"):
                conds.append(Instance.uuid.in_(select(InstanceTag.instance_uuid).where(
                    InstanceTag.tag.in_(filters["tags-any"]))))
            if filters.get("not-tags"):
                nt = filters["not-tags"]
                sub = (select(InstanceTag.instance_uuid).where(InstanceTag.tag.in_(nt))
                       .group_by(InstanceTag.instance_uuid)
                       .having(func.count() == len(set(nt))))
                conds.append(Instance.uuid.not_in(sub))
            if filters.get("not-tags-any"):
                conds.append(Instance.uuid.not_in(select(InstanceTag.instance_uuid).where(
                    InstanceTag.tag.in_(filters["not-tags-any"]))))
            q = q.where(and_(*conds))
            cols = [(getattr(Instance, _sort_col(k)), d) for k, d in sort]
            cols.append((Instance.uuid, sort[-1][1] if sort else "desc"))
            order = [c.asc() if d == "asc" else c.desc() for c, d in cols]
            q = q.order_by(*order)
            if marker is not None:
                mrow = s.get(Instance, marker) if looks_like_uuid(marker) else None
                if mrow is None:
                    raise BadRequest(f"marker [{marker}] not found")
                clauses = []
                for i, (c, d) in enumerate(cols):
                    eq = [cc == getattr(mrow, cc.key) for cc, _ in cols[:i]]
                    v = getattr(mrow, c.key)
                    if v is None:
                        continue
                    clauses.append(and_(*eq, c > v if d == "asc" else c < v))
                q = q.where(or_(*clauses))
            regex = filters.get("name")
            ip = filters.get("ip") or filters.get("ip6")
            post = regex is not None or ip is not None
            if limit is not None and not post:
                q = q.limit(limit)
            rows = list(s.scalars(q))
            if regex is not None:
                try:
                    rx = re.compile(regex)
                except re.error:
                    rows = []
                else:
                    rows = [r for r in rows if rx.search(r.display_name or "")]
            if ip is not None:
                rows = []  # no networking yet: nothing has an address
            if limit is not None and post:
                rows = rows[:limit]
            tags = self._tags(s, [r.uuid for r in rows])
            return [_inst_dict(r, tags.get(r.uuid, [])) for r in rows]

    def update_instance(self, ctx: RequestContext, uuid: str,
                        values: dict[str, Any]) -> InstanceDict:
        allowed = {"display_name", "display_description", "access_ip_v4", "access_ip_v6",
                   "hostname"}
        with self.write() as s:
            row = self._instance_row(ctx, s, uuid)
            for k, v in values.items():
                if k in allowed:
                    setattr(row, k, v)
            row.updated_at = utcnow()
            s.flush()
            return _inst_dict(row, self._tags(s, [uuid]).get(uuid, []))

    def begin_task(self, ctx: RequestContext, uuid: str, action: str,
                   task_state: str | None, vm_states: Sequence[str] | None = None,
                   task_states: Sequence[str | None] = (None,),
                   check_lock: bool = True, record: str | None = None,
                   extra: dict[str, Any] | None = None) -> InstanceDict:
        """Atomically move an instance into ``task_state`` for ``action`` or raise 409.

        The allowed vm_states default to ``states.ACTION_VM_STATES[action]``. Locked instances
        refuse non-admin callers. ``record`` names the instance action to record (default:
        ``action``). ``extra`` sets further columns in the same transaction.
        """
        allowed = vm_states if vm_states is not None else states.ACTION_VM_STATES[action]
        with self.write() as s:
            row = self._instance_row(ctx, s, uuid)
            if check_lock and row.locked and not ctx.is_admin:
                raise Conflict(f"Instance {uuid} is locked")
            if row.vm_state not in allowed:
                raise Conflict(f"Cannot '{action}' instance {uuid} while it is in vm_state "
                               f"{row.vm_state}")
            if row.task_state not in task_states:
                raise Conflict(f"Cannot '{action}' instance {uuid} while it is in task_state "
                               f"{row.task_state}")
            now = utcnow()
            row.task_state = task_state
            for k, v in (extra or {}).items():
                setattr(row, k, v)
            row.updated_at = now
            s.add(new_action(uuid, record or action, ctx, now))
            s.flush()
            return _inst_dict(row, self._tags(s, [uuid]).get(uuid, []))

    def finish_task(self, uuid: str, expected_task_state: str | Sequence[str | None] | None,
                    event: str | None = None, error: str | None = None,
                    **values: Any) -> bool:
        """Write an operation's outcome (agent side) unless the instance moved on meanwhile.

        Returns False (and writes nothing) when the instance is gone or no longer in
        ``expected_task_state`` (e.g. it was deleted while the operation ran). One
        conditional UPDATE, atomic on every backend.
        """
        now = utcnow()
        cols = {("metadata" if k == "meta" else k): v for k, v in values.items()}
        if error is not None:
            cols["fault"] = {"code": 500, "message": error[:255], "created": now.isoformat(),
                             "details": error}
        cols["updated_at"] = now
        with self.core_write() as c:
            res = c.execute(update(_I).where(
                _I.c.uuid == uuid, _I.c.deleted.is_(False),
                _task_matches(expected_task_state)).values(**cols))
            if res.rowcount != 1:
                return False
            if event is not None:
                host = cols["host"] if "host" in cols else c.execute(
                    _SEL_HOST, {"uuid": uuid}).scalar()
                record_event_in(c, uuid, event, host, error, now)
            return True

    def set_instance(self, uuid: str, **values: Any) -> None:
        """Set columns unconditionally (scheduler placement, reconciliation)."""
        with self.write() as s:
            values["updated_at"] = utcnow()
            s.execute(update(Instance).where(Instance.uuid == uuid).values(**values))

    def lock(self, ctx: RequestContext, uuid: str, reason: str | None) -> None:
        with self.write() as s:
            row = self._instance_row(ctx, s, uuid)
            row.locked = True
            row.locked_by = "admin" if ctx.is_admin and row.project_id != ctx.project_id \
                else "owner"
            row.locked_reason = reason
            row.updated_at = utcnow()
            s.add(new_action(uuid, "lock", ctx, row.updated_at))

    def unlock(self, ctx: RequestContext, uuid: str) -> None:
        with self.write() as s:
            row = self._instance_row(ctx, s, uuid)
            if row.locked and row.locked_by == "admin" and not ctx.is_admin:
                raise Forbidden("Policy doesn't allow os_compute_api:os-lock-server:unlock:"
                                "unlock_override to be performed.")
            row.locked = False
            row.locked_by = None
            row.locked_reason = None
            row.updated_at = utcnow()
            s.add(new_action(uuid, "unlock", ctx, row.updated_at))

    def reset_state(self, ctx: RequestContext, uuid: str, state: str) -> None:
        with self.write() as s:
            row = self._instance_row(ctx, s, uuid)
            row.vm_state = state
            row.task_state = None
            row.updated_at = utcnow()
            s.add(new_action(uuid, "resetState", ctx, row.updated_at))

    def begin_delete(self, ctx: RequestContext, uuid: str, force: bool = False,
                     authorize: Callable[[InstanceDict], None] | None = None,
                     ) -> tuple[InstanceDict, bool]:
        """Mark an instance ``deleting``. Returns the instance and whether an agent must now
        destroy its guest (False: it was deleted outright, never placed on a host).

        ``authorize(instance)`` runs first, inside the transaction (policy check on the
        instance's project: the lookup and the change are one read).
        """
        now = utcnow()
        with self.core_write() as c:
            r = self._visible_row(ctx, c, uuid)
            inst = _inst_from_row(r)
            if authorize is not None:
                authorize(inst)
            if r["locked"] and not ctx.is_admin:
                raise Conflict(f"Instance {uuid} is locked")
            c.execute(insert(_ACTION).values(**action_values(uuid, "delete", ctx, now)))
            if r["host"] is None or force and r["vm_state"] == states.ERROR and not r["host"]:
                self._mark_deleted(c, uuid, r["host"], now)
                on_host = False
            else:
                c.execute(update(_I).where(_I.c.uuid == uuid).values(
                    task_state="deleting", updated_at=now))
                inst.update(task_state="deleting", updated_at=now)
                on_host = True
        if not on_host:
            self.release_placement(uuid)
        return inst, on_host

    def finish_delete(self, uuid: str) -> None:
        """The guest is gone: soft-delete the row, release resources and memberships."""
        with self.core_write() as c:
            r = c.execute(select(_I.c.host, _I.c.deleted).where(_I.c.uuid == uuid)).first()
            if r is None or r.deleted:
                return
            self._mark_deleted(c, uuid, r.host, utcnow())
        self.release_placement(uuid)

    def _mark_deleted(self, c: Connection, uuid: str, host: str | None,
                      now: dt.datetime) -> None:
        c.execute(update(_I).where(_I.c.uuid == uuid).values(
            vm_state=states.DELETED, task_state=None, power_state=states.NOSTATE,
            deleted=True, deleted_at=now, terminated_at=now, updated_at=now))
        self.release_in(c, uuid)
        c.execute(delete(_MEMBER).where(_MEMBER.c.instance_uuid == uuid))
        c.execute(delete(_CONSOLE).where(_CONSOLE.c.instance_uuid == uuid))
        record_event_in(c, uuid, "compute_terminate_instance", host, None, now)

    def set_metadata(self, ctx: RequestContext, uuid: str, meta: dict[str, str],
                     replace_all: bool, max_items: bool = True) -> dict[str, str]:
        with self.write() as s:
            row = self._instance_row(ctx, s, uuid)
            if row.locked and not ctx.is_admin:
                raise Conflict(f"Instance {uuid} is locked")
            if row.task_state is not None and row.task_state == "deleting":
                raise Conflict(f"Cannot 'update metadata' instance {uuid} while it is in "
                               f"task_state {row.task_state}")
            cur = {} if replace_all else dict(row.meta or {})
            cur.update(meta)
            if max_items:
                limit = quotas.project_limits(
                    s, row.project_id, None, self.unified_limits)["metadata_items"]
                if 0 <= limit < len(cur):
                    raise quotas.OverQuota("Quota exceeded for metadata_items: Requested "
                                           f"{len(cur)}, but already used 0 of {limit} "
                                           "metadata_items")
            row.meta = cur
            row.updated_at = utcnow()
            return cur

    def delete_metadata(self, ctx: RequestContext, uuid: str, key: str) -> None:
        with self.write() as s:
            row = self._instance_row(ctx, s, uuid)
            if row.locked and not ctx.is_admin:
                raise Conflict(f"Instance {uuid} is locked")
            cur = dict(row.meta or {})
            if key not in cur:
                raise NotFound("Metadata item was not found")
            del cur[key]
            row.meta = cur
            row.updated_at = utcnow()

    def set_tags(self, ctx: RequestContext, uuid: str, tags: list[str] | None,
                 add: str | None = None, remove: str | None = None) -> list[str]:
        """Replace all tags (``tags``), add one or remove one (``None`` with no args: clear)."""
        with self.write() as s:
            row = self._instance_row(ctx, s, uuid)
            cur = set(s.scalars(select(InstanceTag.tag).where(
                InstanceTag.instance_uuid == uuid)))
            if add is not None:
                if add not in cur and len(cur) >= 50:
                    raise BadRequest("The number of tags exceeded the per-server limit 50")
                new = cur | {add}
            elif remove is not None:
                if remove not in cur:
                    raise NotFound(f"Tag {remove} not found")
                new = cur - {remove}
            else:
                new = set(tags or [])
            s.execute(delete(InstanceTag).where(InstanceTag.instance_uuid == uuid))
            for t in sorted(new):
                s.add(InstanceTag(instance_uuid=uuid, tag=t))
            row.updated_at = utcnow()
            return sorted(new)

    def instances_on_host(self, host: str) -> list[InstanceDict]:
        with self.db.reader() as s:
            rows = s.scalars(select(Instance).where(Instance.host == host,
                                                    Instance.deleted.is_(False)))
            return [_inst_dict(r) for r in rows]

    def deleted_on_host(self, host: str, uuids: Sequence[str]) -> list[str]:
        """Which of ``uuids`` (guests a driver still has) are deleted or moved elsewhere."""
        with self.db.reader() as s:
            live = set(s.scalars(select(Instance.uuid).where(
                Instance.uuid.in_(list(uuids)), Instance.deleted.is_(False),
                Instance.host == host)))
            return [u for u in uuids if u not in live]

    def fail_stuck_builds(self, host: str, older_than: dt.datetime) -> list[str]:
        """Instances on ``host`` stuck in BUILD since before ``older_than`` go to ERROR
        (not those being deleted: their delete was answered, it is finished instead)."""
        with self.write() as s:
            rows = list(s.scalars(select(Instance).where(
                Instance.host == host, Instance.deleted.is_(False),
                Instance.vm_state == states.BUILDING, Instance.updated_at < older_than,
                or_(Instance.task_state.is_(None), Instance.task_state != "deleting"))))
            now = utcnow()
            for r in rows:
                r.vm_state = states.ERROR
                r.task_state = None
                r.fault = {"code": 500, "created": now.isoformat(),
                           "message": "Build of instance aborted: the compute service "
                                      "restarted while it was building.",
                           "details": ""}
                r.updated_at = now
            return [r.uuid for r in rows]

    def spawning_on(self, uuid: str, host: str) -> bool:
        """Whether the instance is (still) being built on ``host`` (a build message that
        arrives twice, e.g. redelivered by the broker after a crash, is not run twice)."""
        with self.db.reader() as s:
            return s.execute(select(Instance.uuid).where(
                Instance.uuid == uuid, Instance.deleted.is_(False), Instance.host == host,
                Instance.task_state == "spawning")).first() is not None


def _hostname(name: str) -> str:
    """The hostname Nova derives from a display name (a hostname given at 2.90+ is kept as
    it is: the request schema has already checked it)."""
    h = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-.")
    return h[:63] or "server"


def _sort_col(key: str) -> str:
    return {"id": "uuid", "instance_type_id": "vcpus", "kernel_id": "image_ref",
            "ramdisk_id": "image_ref", "root_device_name": "image_ref",
            "ephemeral_gb": "root_gb"}.get(key, key)
