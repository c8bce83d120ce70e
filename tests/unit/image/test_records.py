"""The image task record names only columns of the task row."""

from __future__ import annotations

from onestack.db.image import ImageTask
from onestack.image.records import TaskRecord


def test_task_record_members_are_row_columns() -> None:
    members = set(vars(TaskRecord)["__annotations__"])
    assert members and members <= set(ImageTask.__table__.columns.keys())
