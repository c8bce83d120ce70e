"""The action log of instances (``os-instance-actions``): an action per user request, with
the events the agents record as the work goes (their outcome and finish time); part of
``ComputeManager``, whose state changes record their actions with the helpers here."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from onestack.common.context import RequestContext
from onestack.common.errors import NotFound
from onestack.common.ids import new_uuid
from onestack.common.timeutils import utcnow
from onestack.compute.store import ManagerState
from onestack.db.compute import InstanceAction

_ACTION = InstanceAction.__table__
_SEL_LAST_ACTION = (select(_ACTION.c.id, _ACTION.c.events)
                    .where(_ACTION.c.instance_uuid == bindparam("uuid"))
                    .order_by(_ACTION.c.id.desc()).limit(1))


class ActionLog(ManagerState):
    """Instance actions and their events."""

    def record_action(self, ctx: RequestContext, uuid: str, action: str) -> None:
        """An instance action that needs no task state (e.g. ``attach_interface``)."""
        with self.write() as s:
            s.add(new_action(uuid, action, ctx, utcnow()))

    def record_event(self, uuid: str, event: str, host: str | None,
                     error: str | None = None) -> None:
        with self.core_write() as c:
            record_event_in(c, uuid, event, host, error, utcnow())

    def instance_actions(self, ctx: RequestContext, uuid: str) -> list[dict[str, Any]]:
        with self.db.reader() as s:
            self._instance_row(ctx, s, uuid, deleted_ok=True)
            rows = s.scalars(select(InstanceAction).where(
                InstanceAction.instance_uuid == uuid).order_by(
                InstanceAction.start_time.desc(), InstanceAction.id.desc()))
            return [action_dict(a) for a in rows]

    def instance_action(self, ctx: RequestContext, uuid: str,
                        request_id: str) -> dict[str, Any]:
        with self.db.reader() as s:
            self._instance_row(ctx, s, uuid, deleted_ok=True)
            a = s.scalar(select(InstanceAction).where(
                InstanceAction.instance_uuid == uuid,
                InstanceAction.request_id == request_id).order_by(
                InstanceAction.id.desc()).limit(1))
            if a is None:
                raise NotFound(f"Action for request_id {request_id} on instance {uuid} not "
                               "found")
            return action_dict(a)


def action_values(uuid: str, action: str, ctx: RequestContext,
                   now: dt.datetime) -> dict[str, Any]:
    return {"instance_uuid": uuid, "action": action,
            "request_id": ctx.request_id or ("req-" + new_uuid()),
            "project_id": ctx.project_id, "user_id": ctx.user_id, "start_time": now,
            "updated_at": now, "events": []}


def new_action(uuid: str, action: str, ctx: RequestContext, now: dt.datetime) -> InstanceAction:
    return InstanceAction(**action_values(uuid, action, ctx, now))


def _event_doc(event: str, host: str | None, error: str | None,
               now: dt.datetime) -> dict[str, Any]:
    return {"event": event, "start_time": now.isoformat(), "finish_time": now.isoformat(),
            "result": "Error" if error else "Success", "traceback": error, "host": host}


def record_event_in(c: Connection, uuid: str, event: str, host: str | None,
                  error: str | None, now: dt.datetime) -> None:
    """Append an event to the instance's newest action (its outcome and finish time)."""
    last = c.execute(_SEL_LAST_ACTION, {"uuid": uuid}).first()
    if last is None:
        return
    values: dict[str, Any] = {"events": [*(last.events or []),
                                         _event_doc(event, host, error, now)],
                              "finish_time": now, "updated_at": now}
    if error:
        values["message"] = "Error"
    c.execute(update(_ACTION).where(_ACTION.c.id == last.id).values(**values))


def action_dict(a: InstanceAction) -> dict[str, Any]:
    return {"action": a.action, "instance_uuid": a.instance_uuid, "request_id": a.request_id,
            "project_id": a.project_id, "user_id": a.user_id, "message": a.message,
            "start_time": a.start_time, "updated_at": a.updated_at,
            "events": list(a.events or [])}
