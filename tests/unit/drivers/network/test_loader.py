"""Choosing the data plane from the settings (``network_driver``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from onestack.config import Settings
from onestack.drivers.network import loader
from onestack.drivers.network.noop import NoopDriver


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_auto_is_noop_for_fake_guests(tmp_path: Path) -> None:
    assert loader.resolve(_settings(tmp_path, network_driver="auto",
                                    compute_driver="fake")) == "noop"
    assert isinstance(loader.build_network_driver(_settings(tmp_path, compute_driver="fake")),
                      NoopDriver)


@pytest.mark.parametrize("missing, expected", [([], "linux"), (["not root"], "noop")])
def test_auto_with_real_guests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               missing: list[str], expected: str) -> None:
    monkeypatch.setattr("onestack.drivers.network.linux.host.missing_requirements",
                        lambda: missing)
    assert loader.resolve(_settings(tmp_path, network_driver="auto",
                                    compute_driver="qemu")) == expected


def test_linux_asked_for_but_impossible_says_why(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("onestack.drivers.network.linux.host.missing_requirements",
                        lambda: ["dnsmasq not found"])
    with pytest.raises(ValueError, match="dnsmasq not found"):
        loader.resolve(_settings(tmp_path, network_driver="linux"))


def test_unknown_driver_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="network_driver"):
        loader.resolve(_settings(tmp_path, network_driver="ovs"))


def test_linux_options_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("onestack.drivers.network.linux.host.missing_requirements",
                        lambda: [])
    driver = loader.build_network_driver(_settings(
        tmp_path, network_driver="linux", network_bridge_mappings="physnet1:br-ex, x:y",
        network_public_subnet_range="172.24.4.0/24", network_public_gateway="172.24.4.1",
        bind="0.0.0.0", metadata_port=8775, metadata_proxy_shared_secret="s3"))
    opts = driver.options  # type: ignore[attr-defined]
    assert opts.bridge_mappings == {"physnet1": "br-ex", "x": "y"}
    assert opts.public_gateway_cidr == "172.24.4.1/24"
    assert (opts.metadata_host, opts.metadata_port, opts.metadata_secret) == (
        "127.0.0.1", 8775, "s3")
    assert opts.state_dir == tmp_path / "dataplane"
    no_address = loader.build_network_driver(_settings(
        tmp_path, network_driver="linux", network_public_bridge_address=False))
    assert no_address.options.public_gateway_cidr == ""  # type: ignore[attr-defined]
