"""Image members: sharing an image with other projects and their acceptance. Part of
``ImageManager`` (``MemberStore``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge
from onestack.common.timeutils import utcnow
from onestack.db.image import Image, ImageMember
from onestack.image import schemas
from onestack.image.records import MAX_MEMBERS, ImageRecords, MemberInfo


class MemberStore(ImageRecords):
    """Image members: sharing an image with other projects and their acceptance."""

    # ------------------------------------------------------------------ members
    def _member_image(self, ctx: RequestContext, s: Session, image_id: str) -> Image:
        img = self._get_row(ctx, s, image_id)
        if img.visibility != "shared":
            raise Forbidden(f"Only shared images have members (image {image_id} is "
                            f"{img.visibility}).")
        return img

    @staticmethod
    def _member(row: ImageMember) -> MemberInfo:
        return MemberInfo(row.image_id, row.member, row.status, row.created_at, row.updated_at)

    def _visible_member(self, ctx: RequestContext, s: Session, image_id: str,
                        member_id: str) -> tuple[Image, ImageMember]:
        """The shared image and its member row, seen by the image owner, the member itself
        or an administrator (404 to anyone else)."""
        img = self._member_image(ctx, s, image_id)
        row = s.get(ImageMember, (image_id, member_id))
        if row is None or (not ctx.is_admin and img.owner != ctx.project_id
                           and member_id != ctx.project_id):
            raise NotFound(f"{member_id} is not a member of image {image_id}.")
        return img, row

    def add_member(self, ctx: RequestContext, image_id: str, member_id: str) -> MemberInfo:
        if not isinstance(member_id, str) or not member_id or len(member_id) > 64:
            raise BadRequest("member must be a project id (1 to 64 characters).")
        with self.db.transaction() as s:
            img = self._member_image(ctx, s, image_id)
            target = {"project_id": img.owner or "", "member_id": member_id}
            if not self.allowed(ctx, "add_member", target):
                raise Forbidden("You are not authorized to share this image.")
            if s.get(ImageMember, (image_id, member_id)) is not None:
                raise Conflict(f"The member {member_id} is already a member of image "
                               f"{image_id}.")
            count = s.scalar(select(func.count()).select_from(ImageMember).where(
                ImageMember.image_id == image_id)) or 0
            if count >= MAX_MEMBERS:
                raise PayloadTooLarge(f"Maximum number of image members exceeded "
                                      f"({MAX_MEMBERS}).")
            now = utcnow()
            row = ImageMember(image_id=image_id, member=member_id, status="pending",
                              created_at=now, updated_at=now)
            s.add(row)
            s.flush()
            return self._member(row)

    def list_members(self, ctx: RequestContext, image_id: str) -> list[MemberInfo]:
        with self.db.reader() as s:
            img = self._member_image(ctx, s, image_id)
            stmt = select(ImageMember).where(ImageMember.image_id == image_id)
            if not ctx.is_admin and img.owner != ctx.project_id:
                stmt = stmt.where(ImageMember.member == (ctx.project_id or ""))
            return [self._member(r) for r in s.scalars(stmt.order_by(ImageMember.created_at))]

    def get_member(self, ctx: RequestContext, image_id: str, member_id: str) -> MemberInfo:
        with self.db.reader() as s:
            _, row = self._visible_member(ctx, s, image_id, member_id)
            return self._member(row)

    def update_member(self, ctx: RequestContext, image_id: str, member_id: str,
                      status: Any) -> MemberInfo:
        with self.db.transaction() as s:
            img, row = self._visible_member(ctx, s, image_id, member_id)
            if status not in schemas.MEMBER_STATUSES:
                raise BadRequest(f"Invalid status: {status!r}; expected one of "
                                 f"{', '.join(schemas.MEMBER_STATUSES)}.")
            if not self.allowed(ctx, "modify_member",
                                {"project_id": img.owner or "", "member_id": member_id}):
                raise Forbidden("Only the member may change its membership status.")
            row.status = status
            row.updated_at = utcnow()
            s.flush()
            return self._member(row)

    def delete_member(self, ctx: RequestContext, image_id: str, member_id: str) -> None:
        with self.db.transaction() as s:
            img, row = self._visible_member(ctx, s, image_id, member_id)
            if not self.allowed(ctx, "delete_member",
                                {"project_id": img.owner or "", "member_id": member_id}):
                raise Forbidden("Only the image owner may remove members.")
            s.delete(row)
