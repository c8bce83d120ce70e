"""The volume API's read-only records name only attributes their rows have."""

from __future__ import annotations

import pytest

from onestack.db import volume as db
from onestack.volume import records

PAIRS = [(records.VolumeRecord, db.Volume), (records.SnapshotRecord, db.Snapshot),
         (records.VolumeTypeRecord, db.VolumeType), (records.QosSpecsRecord, db.QosSpecs),
         (records.BackupRecord, db.Backup), (records.TransferRecord, db.Transfer),
         (records.MessageRecord, db.Message), (records.GroupTypeRecord, db.GroupType),
         (records.GroupRecord, db.Group), (records.GroupSnapshotRecord, db.GroupSnapshot)]


@pytest.mark.parametrize(("record", "row"), PAIRS, ids=[r.__name__ for r, _ in PAIRS])
def test_record_members_are_row_columns(record: type, row: type) -> None:
    # Inherited members (``OwnedRecord``'s) are checked against each row too.
    members = {m for cls in record.__mro__ for m in vars(cls).get("__annotations__", {})}
    assert members
    assert members <= set(row.__table__.columns.keys()) | {"metadata_"}
    assert all(hasattr(row, m) for m in members)
