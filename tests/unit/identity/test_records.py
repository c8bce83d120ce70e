"""The identity API's read-only records name only attributes their rows have."""

from __future__ import annotations

import pytest

from onestack.db import identity as db
from onestack.identity import records

PAIRS = [(records.DomainRecord, db.Domain), (records.ProjectRecord, db.Project),
         (records.UserRecord, db.User), (records.GroupRecord, db.Group),
         (records.RoleRecord, db.Role), (records.RegionRecord, db.Region),
         (records.ServiceRecord, db.Service), (records.EndpointRecord, db.Endpoint),
         (records.AppCredRecord, db.ApplicationCredential),
         (records.AccessRuleRecord, db.AccessRule), (records.CredentialRecord, db.Credential),
         (records.DocumentRecord, db.Document), (records.TrustRecord, db.Trust)]


@pytest.mark.parametrize(("record", "row"), PAIRS, ids=[r.__name__ for r, _ in PAIRS])
def test_record_members_are_row_columns(record: type, row: type) -> None:
    # Inherited members (``InDomainRecord``'s) are checked against each row too.
    members = {m for cls in record.__mro__ for m in vars(cls).get("__annotations__", {})}
    assert members
    assert members <= set(row.__table__.columns.keys())
