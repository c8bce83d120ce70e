"""One typed settings object for the whole cloud.

Values come, in increasing priority, from the defaults below, ``DATA/onestack.toml`` and the
environment (``ONESTACK_<FIELD>`` in upper case). In the TOML file a table flattens into its
fields: ``[identity] port = 5001`` sets ``identity_port``. Unknown keys are an error, so a typo
never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

SERVICE_PORTS: dict[str, int] = {
    "identity": 5000,
    "image": 9292,
    "compute": 8774,
    "metadata": 8775,
    "console": 6080,
    "placement": 8778,
    "network": 9696,
    "volume": 8776,
    "dashboard": 8080,
}


class ConfigError(ValueError):
    """Raised for a setting that cannot be parsed or does not exist."""


def default_data_dir() -> Path:
    """The data directory used when neither ``--data-dir`` nor the environment names one."""
    env = os.environ.get("ONESTACK_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "onestack"


class PathIn:
    """A read-only attribute: the path ``name`` inside the directory that the instance's
    ``base`` attribute holds (``config_file = PathIn("data_dir", "onestack.toml")``)."""

    def __init__(self, base: str, name: str) -> None:
        self.base = base
        self.name = name
        self.attr = name

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> PathIn: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> Path: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> Path | PathIn:
        if obj is None:
            return self
        return Path(getattr(obj, self.base)) / self.name

    def __set__(self, obj: object, value: object) -> None:
        raise AttributeError(f"{self.attr!r} follows {self.base!r} and cannot be set")


@dataclass
class Settings:
    """Everything that can be configured, with defaults that run on a laptop."""

    data_dir: Path = field(default_factory=default_data_dir)
    bind: str = "127.0.0.1"
    public_host: str = ""
    region: str = "RegionOne"
    log_level: str = "warning"
    # Database: empty means SQLite (WAL) in the data dir.
    database_url: str = ""
    database_pool_size: int = 10
    # Message bus: memory:// (in-process) or amqp://user:pass@host:5672/
    bus_url: str = "memory://"
    # Ports
    identity_port: int = SERVICE_PORTS["identity"]
    image_port: int = SERVICE_PORTS["image"]
    compute_port: int = SERVICE_PORTS["compute"]
    metadata_port: int = SERVICE_PORTS["metadata"]
    console_port: int = SERVICE_PORTS["console"]
    placement_port: int = SERVICE_PORTS["placement"]
    network_port: int = SERVICE_PORTS["network"]
    volume_port: int = SERVICE_PORTS["volume"]
    #: The web dashboard (``onestack.dashboard``; optional: skipped when the port is taken).
    dashboard_port: int = SERVICE_PORTS["dashboard"]
    # API machinery
    max_request_body_size: int = 114688
    policy_file: str = ""
    # Identity
    admin_password: str = ""
    demo_password: str = ""
    token_expiration: int = 3600
    token_allow_expired_window: int = 172800
    fernet_max_active_keys: int = 3
    bcrypt_rounds: int = 12
    lockout_failure_attempts: int = 0
    lockout_duration: int = 1800
    password_expires_days: int = 0
    unique_last_password_count: int = 0
    cache_refresh_interval: float = 1.0
    #: Processes serving the identity API (0: one per CPU, at most 4).
    identity_workers: int = 0
    # Image
    #: Total bytes of image data one project may store (0 = unlimited; Glance's
    #: user_storage_quota). Exceeding it answers 413.
    image_quota_bytes: int = 0
    #: Image quotas from Keystone's unified limits (the ``image`` service's
    #: ``image_size_total`` in MiB), as Glance's ``use_keystone_limits``.
    image_unified_limits: bool = False
    #: Largest JSON request body the image API reads (its upload routes stream instead).
    image_max_json_body: int = 65536
    #: Image stores as ``id[:weight]`` entries, comma-separated, the first the default
    #: (e.g. ``fast:200,file:100``); empty: the single ``file`` store. See docs/image.md.
    image_stores: str = ""
    #: URL prefixes (``scheme://host[:port][/path]``, comma-separated) the image service may
    #: read image data from: ``web-download``/``glance-download`` imports and http(s)
    #: locations (the read-only ``web`` store). Empty (default): it never fetches a URL.
    image_url_allow: str = ""
    #: Show and manage image ``locations`` (Glance's ``show_multiple_locations``; shows
    #: file-store paths to users, so off by default).
    image_locations: bool = False
    #: Refuse image data whose content is not its ``disk_format`` (415), as Glance's
    #: ``[image_format] require_image_format_match`` (default on). Safety checks (qcow2
    #: backing/data files, VMDK extents…) apply either way. See image/formats.py.
    image_require_format_match: bool = True
    # Network
    #: Physical networks that may carry flat networks (ML2 ``flat_networks``; ``*`` = any).
    network_flat_networks: str = "public,physnet1"
    #: ``physnet[:min:max]`` entries, comma-separated (ML2 ``network_vlan_ranges``).
    network_vlan_ranges: str = "physnet1:100:200"
    #: ``min:max`` VNI ranges, comma-separated (ML2 ``vni_ranges``).
    network_vxlan_ranges: str = "1:1000"
    network_geneve_ranges: str = "1:1000"
    #: Type given to project networks created without provider attributes, in order of
    #: preference (ML2 ``tenant_network_types``).
    network_tenant_network_types: str = "vxlan"
    #: MTU of the physical networks (Neutron's ``global_physnet_mtu``).
    network_physnet_mtu: int = 1500
    #: MAC prefix of generated port addresses; ``00`` octets are randomised.
    network_base_mac: str = "fa:16:3e:00:00:00"
    #: Host name the agents and port bindings of this host report (empty: the host name).
    network_host: str = ""
    #: The DevStack-style defaults made on first start (public, private, router1).
    network_create_defaults: bool = True
    network_public_physical_network: str = "public"
    network_public_subnet_range: str = "172.24.4.0/24"
    network_public_gateway: str = "172.24.4.1"
    network_private_subnet_range: str = "10.0.0.0/26"
    #: Data plane: ``noop`` (the model only), ``linux`` (bridges, namespaces, dnsmasq,
    #: nftables; needs root, iproute2, nftables and dnsmasq) or ``auto`` (``linux`` when it
    #: can run and the compute driver runs real guests, else ``noop``).
    network_driver: str = "auto"
    #: Linux data plane: ``physnet:bridge`` pairs (comma-separated) putting a flat physical
    #: network on an existing bridge; unmapped flat networks get ``brq<net>``.
    network_bridge_mappings: str = ""
    #: Linux data plane: give the public network's bridge the public gateway address (the
    #: host side of ``public``, as DevStack's br-ex carries 172.24.4.1/24).
    network_public_bridge_address: bool = True
    #: Linux data plane: seconds between full reconciles of the host with the database.
    network_sync_interval: float = 60.0
    # Compute
    #: Hypervisor driver of this host's compute agent(s): auto (QEMU when it is installed
    #: and works here, else fake), qemu or fake.
    compute_driver: str = "auto"
    #: QEMU driver: accelerator ``auto`` (KVM when a time-boxed probe boots, else TCG),
    #: ``kvm`` or ``tcg``.
    compute_qemu_accel: str = "auto"
    #: QEMU driver: give every guest a config drive, asked for or not.
    compute_force_config_drive: bool = False
    #: Shared secret of the metadata proxy's ``X-Instance-ID-Signature`` HMAC (empty: one
    #: is generated once into ``DATA/metadata-secret``).
    metadata_proxy_shared_secret: str = ""
    #: Number of fake compute hosts this process runs (fake driver only).
    compute_fake_hosts: int = 1
    #: Host name of the compute agent (empty: this machine's host name).
    compute_host: str = ""
    #: Run compute agents in this process (off for an API/scheduler-only process).
    compute_run_agents: bool = True
    compute_fake_vcpus: int = 32
    compute_fake_memory_mb: int = 131072
    compute_fake_disk_gb: int = 2048
    #: Seconds the fake driver sleeps in every operation (tests, benchmarks).
    compute_fake_delay: float = 0.0
    compute_default_availability_zone: str = "nova"
    # Volume
    #: ``file``: volumes as sparse files in ``<data dir>/volumes`` (the default); ``fake``: in
    #: memory, a test double.
    volume_driver: str = "file"
    #: Thin provisioning: GiB promised may reach this many times the file system's size
    #: (Cinder's ``max_over_subscription_ratio``).
    volume_max_over_subscription_ratio: float = 20.0
    #: Capacity of the ``fake`` volume driver.
    volume_fake_capacity_gb: int = 1000
    #: Volume quotas from Keystone's unified limits (the ``block-storage`` service's
    #: ``volumes``, ``gigabytes``, ``snapshots``, ``backups``, ``backup_gigabytes``,
    #: ``groups``, per-type ``volumes_<type>``…, Cinder's names) instead of os-quota-sets;
    #: a resource without a registered limit is unlimited.
    volume_unified_limits: bool = False
    #: Compute quotas from Keystone's unified limits (``/v3/registered_limits`` and
    #: ``/v3/limits`` of the ``compute`` service, Nova's resource names) instead of the
    #: os-quota-sets values, as Nova's ``[quota] driver = unified_limits``.
    compute_unified_limits: bool = False
    #: The most instances one ``POST /servers`` creates (its ``max_count`` is lowered to
    #: this, a ``min_count`` above it is refused with 403), whatever the project's quota,
    #: unlimited included: one request never records an unbounded number of servers.
    compute_max_instances_per_request: int = 1000
    compute_heartbeat_interval: float = 10.0
    compute_reconcile_interval: float = 60.0
    #: Seconds an accepted boot may stay unscheduled (its scheduling lost in a crash)
    #: before it is scheduled again; one whose ports were never all made is removed then.
    #: Boots from before a restart are rescheduled at once (compute/recovery.py).
    compute_recover_after: float = 60.0
    #: Instances in BUILD for longer than this go to ERROR (seconds).
    compute_build_timeout: float = 600.0
    #: Seconds a stop (and shelve) gives the guest to shut down cleanly (ACPI power button)
    #: before it is powered off the hard way (Nova's ``shutdown_timeout``).
    compute_shutdown_timeout: float = 60.0
    #: Console proxy: seconds a console URL's token stays valid (Nova's ``token_ttl``).
    console_token_ttl: int = 600
    #: Console proxy: host names besides its own that a browser's ``Origin`` may carry
    #: (comma-separated; Nova's ``[console] allowed_origins``).
    console_allowed_origins: str = ""
    #: Console proxy: noVNC directory to serve (empty: /usr/share/novnc when installed).
    console_novnc_dir: str = ""
    #: Scheduler filters (comma-separated class names; empty: the default set).
    scheduler_filters: str = ""
    #: Weigher multipliers as ``Name:multiplier`` (comma-separated), over the defaults.
    scheduler_weighers: str = ""
    scheduler_max_attempts: int = 3
    scheduler_host_subset_size: int = 1
    #: Where the scheduler claims resources: ``placement`` (the placement service's
    #: allocations, atomic) or ``local`` (conditional updates of the compute node counters).
    compute_claims: str = "placement"

    # -- derived -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        """Host written into catalog URLs."""
        if self.public_host:
            return self.public_host
        if self.bind in ("0.0.0.0", "::", ""):
            return "127.0.0.1"
        return self.bind

    def port(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def url(self, service: str) -> str:
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port(service)}"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'onestack.db'}"

    fernet_key_dir = PathIn("data_dir", "fernet-keys")
    credential_key_dir = PathIn("data_dir", "credential-keys")
    config_file = PathIn("data_dir", "onestack.toml")


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, value: Any) -> Any:
    hint = typing.get_type_hints(Settings)[name]
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if hint is Path:
            return Path(str(value)).expanduser()
        if hint in (int, float, str):
            return hint(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {value!r} ({exc})") from exc
    return value


def _flatten(prefix: str, data: dict[str, Any], out: dict[str, Any]) -> None:
    for key, value in data.items():
        name = f"{prefix}_{key}" if prefix else key
        name = name.replace("-", "_")
        if isinstance(value, dict):
            _flatten(name, value, out)
        else:
            out[name] = value


def load_settings(data_dir: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings: defaults < ``DATA/onestack.toml`` < environment < ``overrides``."""
    values: dict[str, Any] = {}
    ddir = Path(data_dir).expanduser() if data_dir else default_data_dir()
    values["data_dir"] = ddir
    cfg = ddir / "onestack.toml"
    if cfg.exists():
        with cfg.open("rb") as fh:
            flat: dict[str, Any] = {}
            _flatten("", tomllib.load(fh), flat)
        for key, value in flat.items():
            if key not in _FIELDS or key == "data_dir":
                raise ConfigError(f"{cfg}: unknown setting {key!r}")
            values[key] = _coerce(key, value)
    for key in _FIELDS:
        env = os.environ.get(f"ONESTACK_{key.upper()}")
        if env is not None and key != "data_dir":
            values[key] = _coerce(key, env)
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, value)
    return Settings(**values)
