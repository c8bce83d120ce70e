"""The boot request's NIC order (``compute/network.py``: ``nic_order``, ``in_nic_order``)."""

from __future__ import annotations

from onestack.compute.network import in_nic_order, nic_order


def _port(pid: str, net: str) -> dict[str, str]:
    return {"id": pid, "network_id": net}


def test_ports_follow_the_request_whatever_their_creation_order() -> None:
    plan = [{"network_id": "A", "fixed_ip": None}, {"port_id": "x", "network_id": "B"},
            {"network_id": "B", "fixed_ip": None}, {"network_id": "A", "fixed_ip": None}]
    order = nic_order(plan)
    assert order == [["network", "A"], ["port", "x"], ["network", "B"], ["network", "A"]]
    # Creation order: the user's port first (made before the boot), then compute's ports.
    ports = [_port("x", "B"), _port("a1", "A"), _port("b1", "B"), _port("a2", "A")]
    assert [p["id"] for p in in_nic_order(ports, order)] == ["a1", "x", "b1", "a2"]


def test_ports_not_in_the_request_come_last_and_no_order_changes_nothing() -> None:
    ports = [_port("x", "B"), _port("a1", "A"), _port("late", "A")]
    order = [["network", "A"], ["port", "x"]]
    assert [p["id"] for p in in_nic_order(ports, order)] == ["a1", "x", "late"]
    assert in_nic_order(ports, None) == ports and in_nic_order(ports, []) == ports
    # A port detached since the boot: its entry matches nothing, the rest keep their order.
    assert [p["id"] for p in in_nic_order([_port("a1", "A")], order)] == ["a1"]
