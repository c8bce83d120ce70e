"""The boot request as it crosses the bus (``onestack.compute.boot_request``)."""

from __future__ import annotations

import pytest

from onestack.common.errors import BadRequest
from onestack.compute.boot_request import BootRequest


def test_request_of_a_recorded_boot() -> None:
    r = BootRequest.from_system_metadata({
        "image_properties": {"hw_x": "1"}, "requested_az": "nova",
        "scheduler_hints": {"group": "g1", "same_host": ["x"]},
        "schedule_request": {"availability_zone": "nova:h1", "host": "h1",
                             "hypervisor_hostname": None, "group": "g1",
                             "hints": {"same_host": ["x"]}}})
    assert r == BootRequest(availability_zone="nova:h1", group="g1", host="h1",
                            hints={"same_host": ["x"]}, image_properties={"hw_x": "1"})


def test_a_recorded_boot_without_its_request_uses_the_hints() -> None:
    r = BootRequest.from_system_metadata({"requested_az": "z1",
                                          "scheduler_hints": {"group": "g2", "a": 1}})
    assert (r.availability_zone, r.group, r.hints, r.host) == ("z1", "g2", {"a": 1}, None)


def test_round_trip_through_the_wire() -> None:
    r = BootRequest(availability_zone="nova", image_properties={"hw_x": "1"}, group="g",
                    hints={"same_host": ["u"]}, admin_pass="pw",
                    instance={"flavor": {"vcpus": 1}}, names={"u1": "vm1"})
    assert BootRequest.from_wire(r.to_wire()) == r
    assert r.schedule_record() == {"availability_zone": "nova", "group": "g",
                                   "hints": {"same_host": ["u"]}, "host": None,
                                   "hypervisor_hostname": None}
    # Moves send a partial request; nothing at all is an empty one.
    assert BootRequest.from_wire({"host": "h1"}).host == "h1"
    assert BootRequest.from_wire(None) == BootRequest()


@pytest.mark.parametrize("doc", [
    [], "x", {"host": 3}, {"hints": []}, {"image_properties": "a"}, {"instance": []},
    {"names": ["a"]}, {"availability_zone": {"a": 1}}])
def test_wrong_types_are_refused(doc: object) -> None:
    with pytest.raises(BadRequest):
        BootRequest.from_wire(doc)  # type: ignore[arg-type]
