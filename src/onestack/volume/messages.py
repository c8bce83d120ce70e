"""User messages of the block-storage service (Cinder's ``messages``: why an asynchronous
operation failed, kept 30 days). Part of ``VolumeManager``."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.timeutils import utcnow
from onestack.db.volume import Message
from onestack.volume.records import MessageRecord
from onestack.volume.visibility import visible


class MessagesMixin:
    """User messages of ``VolumeManager`` (which provides ``write``/``read``/``enforce``)."""

    write: Callable[..., Any]
    read: Callable[..., Any]
    enforce: Callable[..., None]

    def add_message(self, project_id: str, resource_type: str, resource_uuid: str | None,
                    event_id: str, message: str) -> None:
        """Record a user message (kept 30 days, Cinder's default)."""
        now = utcnow()

        def run(s: Session) -> None:
            s.add(Message(id=str(uuid.uuid4()), project_id=project_id,
                          resource_type=resource_type, resource_uuid=resource_uuid,
                          event_id=event_id, message=message[:255],
                          request_id=f"req-{uuid.uuid4()}", created_at=now,
                          expires_at=now + dt.timedelta(days=30)))
        self.write(run)

    def list_messages(self, ctx: RequestContext) -> list[MessageRecord]:
        def run(s: Session) -> list[Message]:
            q = select(Message).where(Message.expires_at > utcnow())
            if not ctx.is_admin:
                q = q.where(Message.project_id == (ctx.project_id or ""))
            return list(s.scalars(q.order_by(Message.created_at.desc())))
        return self.read(run)

    @staticmethod
    def _visible_message(s: Session, ctx: RequestContext, message_id: str) -> Message:
        """The message, if it is the caller's project's (or the caller is an admin): 404."""
        return visible(ctx, s.get(Message, message_id), "Message", message_id)

    def get_message(self, ctx: RequestContext, message_id: str) -> MessageRecord:
        return self.read(lambda s: self._visible_message(s, ctx, message_id))

    def delete_message(self, ctx: RequestContext, message_id: str) -> None:
        def run(s: Session) -> None:
            msg = self._visible_message(s, ctx, message_id)
            self.enforce(ctx, "message:delete", msg.project_id)
            s.delete(msg)
        self.write(run)
