#!/usr/bin/env python3
"""Run a Tempest selection against a running Keystone-v3-compatible cloud.

Standard library only: Tempest itself lives in its own virtual environment
(``$ONESTACK_TEMPEST_VENV``, default ``~/.cache/onestack/tempest-venv``), which
is created on first use.  This script writes a Tempest workspace and a
tempest.conf, selects tests, runs them with ``tempest run --load-list`` and
reports the outcome from the stestr subunit stream.  See docs/conformance.md.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

TEMPEST_VERSION = "47.0.0"
DEFAULT_VENV = "~/.cache/onestack/tempest-venv"
HERE = Path(__file__).resolve().parent
DEFAULT_INTEROP_REGEX = Path(
    os.environ.get(
        "ONESTACK_INTEROP_REGEX", "/work/shared/conformance/interop_required_tests.regex"
    )
)

# onestack service name -> ([service_available] key, tempest.api package)
SERVICES = {
    "identity": (None, "identity"),
    "image": ("glance", "image"),
    "compute": ("nova", "compute"),
    "network": ("neutron", "network"),
    "volume": ("cinder", "volume"),
    "object-storage": ("swift", "object_storage"),
}

# Feature switches that Tempest 47.0.0 itself reads.  Defaults describe a
# stock Keystone v3 (as `keystone-manage bootstrap` leaves it).
TEMPEST_FEATURES = {
    "identity-feature-enabled.api_v2": "false",
    "identity-feature-enabled.api_v3": "true",
    "identity-feature-enabled.trust": "true",
    "identity-feature-enabled.access_rules": "true",
    # Needs [security_compliance] options set in keystone.conf (off by default).
    "identity-feature-enabled.security_compliance": "false",
    "identity-feature-enabled.domain_specific_drivers": "false",
    "identity-feature-enabled.immutable_user_source": "false",
    "identity-feature-enabled.api_extensions": "all",
}

# Switches for Keystone APIs that Tempest 47.0.0 always tests (it has no
# option for them).  Setting one to false removes the matching tests from the
# run and reports them as skipped (skipped never counts as passed).
_IDENTITY_TESTS = {
    "project_tags": r".*\.test_project_tags\.",
    "application_credentials": r".*\.test_application_credentials\.",
    "oauth1": r".*\.test_oauth_consumers\.",
    "endpoint_groups": r".*\.test_endpoint_groups\.",
    "domain_configuration": r".*\.test_domain_configuration\.",
    "policies": r".*\.test_policies\.",
    "credentials": r".*\.test_credentials\.",
    "ec2_credentials": r".*\.test_ec2_credentials\.",
    "inherited_roles": r".*\.test_inherits\.",
    "implied_roles": r".*\.test_roles\.RolesV3TestJSON\.test_.*implied",
    "domain_roles": r".*\.test_roles\.RolesV3TestJSON\.test_.*domain_role",
}
HARNESS_FEATURES = {
    "identity-feature-enabled." + name: r"^tempest\.api\.identity\." + rx
    for name, rx in _IDENTITY_TESTS.items()
}

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


def log(msg: str) -> None:
    print(msg, flush=True)


def die(msg: str, code: int = 2) -> None:
    print("run_tempest: error: " + msg, file=sys.stderr, flush=True)
    sys.exit(code)


# --------------------------------------------------------------------------
# command line


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Write a tempest.conf for a running cloud and run a Tempest selection."
    )
    p.add_argument(
        "--auth-url", required=True, help="Keystone v3 URL, e.g. http://127.0.0.1:5000/v3"
    )
    p.add_argument("--admin-password", required=True)
    p.add_argument("--admin-user", default="admin")
    p.add_argument("--admin-project", default="admin")
    p.add_argument(
        "--admin-domain",
        default="Default",
        help="domain NAME of the admin user and project (default: Default)",
    )
    p.add_argument("--region", default="RegionOne")
    p.add_argument(
        "--services",
        default="identity",
        help="comma list of available services among {} (default: identity)".format(
            ",".join(SERVICES)
        ),
    )
    sel = p.add_argument_group("selection (criteria given together must all match)")
    sel.add_argument(
        "--regex",
        help="Python regex searched in each test id "
        "(default without --include-list/--interop: tempest.api.<service> "
        "for every service in --services)",
    )
    sel.add_argument(
        "--include-list",
        metavar="FILE",
        help="file of regexes, one a line ('#' comments); a test matching any is kept",
    )
    sel.add_argument("--exclude-regex", help="drop tests whose id matches this regex")
    sel.add_argument(
        "--interop",
        action="store_true",
        help=f"the interop-required tests ({DEFAULT_INTEROP_REGEX}) of the chosen services",
    )
    sel.add_argument(
        "--interop-file", type=Path, default=DEFAULT_INTEROP_REGEX, help=argparse.SUPPRESS
    )
    p.add_argument(
        "--feature",
        action="append",
        default=[],
        metavar="SECTION.KEY=BOOL",
        help="feature switch, e.g. identity-feature-enabled.trust=false "
        "(repeatable; see docs/conformance.md for the list)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="any tempest.conf value, e.g. compute.image_ref=<uuid> (repeatable)",
    )
    p.add_argument("--workdir", help="Tempest workspace (default: a new temporary directory)")
    p.add_argument("--concurrency", type=int, default=2, help="test workers (default 2)")
    p.add_argument("--insecure", action="store_true", help="skip TLS certificate checks")
    p.add_argument(
        "--no-debug-log",
        action="store_true",
        help="don't log request/response bodies in tempest.log",
    )
    p.add_argument(
        "--min-pass-percent", type=float, help="exit 1 unless passed/selected*100 >= this"
    )
    p.add_argument(
        "--fail-on-http-500",
        action="store_true",
        help="exit 1 if any response in the run had status 500",
    )
    p.add_argument(
        "--list", action="store_true", help="print the selected test ids and stop (no run)"
    )
    p.add_argument(
        "--reparse",
        action="store_true",
        help="don't run: report on the last run recorded in --workdir",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="don't echo Tempest's per-test output (it still goes to tempest-run.log)",
    )
    p.add_argument(
        "--venv",
        default=os.environ.get("ONESTACK_TEMPEST_VENV", DEFAULT_VENV),
        help=f"Tempest virtualenv (default $ONESTACK_TEMPEST_VENV or {DEFAULT_VENV})",
    )
    args = p.parse_args(argv)

    args.services = [s.strip() for s in args.services.split(",") if s.strip()]
    for s in args.services:
        if s not in SERVICES:
            p.error("unknown service {!r} (known: {})".format(s, ", ".join(SERVICES)))
    if "identity" not in args.services:
        args.services.insert(0, "identity")
    if args.reparse and not args.workdir:
        p.error("--reparse needs --workdir")
    if args.concurrency < 1:
        p.error("--concurrency must be >= 1")
    args.features = {}
    for item in args.feature:
        sec, key, val = split_setting(p, item, "--feature")
        name = sec + "." + key
        low = val.lower()
        if name in HARNESS_FEATURES or (
            name in TEMPEST_FEATURES and TEMPEST_FEATURES[name] in ("true", "false")
        ):
            if low not in TRUE_WORDS | FALSE_WORDS:
                p.error(f"--feature {name} wants true or false, got {val!r}")
            val = "true" if low in TRUE_WORDS else "false"
        elif name not in TEMPEST_FEATURES:
            log(f"warning: --feature {name} is not a known switch; written to tempest.conf as is")
        args.features[name] = val
    args.sets = [split_setting(p, item, "--set") for item in args.set]
    return args


def split_setting(p, item, opt):
    m = re.match(r"^([^.=\s]+)\.([^=\s]+)=(.*)$", item)
    if not m:
        p.error(f"{opt} wants SECTION.KEY=VALUE, got {item!r}")
    return m.group(1), m.group(2), m.group(3)


# --------------------------------------------------------------------------
# Tempest virtualenv


def venv_tempest_version(venv: Path):
    py = venv / "bin" / "python"
    if not py.exists():
        return None
    r = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('tempest'))"],
        capture_output=True,
        text=True,
    )
    return r.stdout.strip() if r.returncode == 0 else None


def ensure_venv(venv: Path) -> Path:
    have = venv_tempest_version(venv)
    if have == TEMPEST_VERSION and (venv / "bin" / "tempest").exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    if not (venv / "bin" / "python").exists():
        log(f"creating Tempest virtualenv at {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log(f"installing tempest=={TEMPEST_VERSION} into {venv} (a few minutes on first use)")
    install_log = venv / "onestack-pip-install.log"
    with open(install_log, "w") as fh:
        r = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "tempest==" + TEMPEST_VERSION],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    if r.returncode != 0 or venv_tempest_version(venv) != TEMPEST_VERSION:
        die(f"pip install tempest=={TEMPEST_VERSION} failed, see {install_log}")
    return venv


def tempest_package_dir(venv: Path) -> Path:
    r = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import os, tempest; print(os.path.dirname(tempest.__file__))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(r.stdout.strip())


# --------------------------------------------------------------------------
# cloud pre-flight


def preflight(args) -> list:
    """Check the cloud answers and the admin credentials work; return catalog types."""
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": args.admin_user,
                        "domain": {"name": args.admin_domain},
                        "password": args.admin_password,
                    }
                },
            },
            "scope": {
                "project": {"name": args.admin_project, "domain": {"name": args.admin_domain}}
            },
        }
    }
    ctx = None
    if args.insecure:
        import ssl

        ctx = ssl._create_unverified_context()
    req = urllib.request.Request(
        args.auth_url.rstrip("/") + "/auth/tokens",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            data = json.load(resp)
    except urllib.error.HTTPError as e:
        die(
            "admin authentication at {} failed: HTTP {} {}".format(
                args.auth_url, e.code, e.read()[:300].decode("utf-8", "replace")
            )
        )
    except (urllib.error.URLError, OSError) as e:
        die(f"cannot reach {args.auth_url}: {e}")
    catalog = data.get("token", {}).get("catalog") or []
    return sorted({c.get("type") for c in catalog if c.get("type")})


# --------------------------------------------------------------------------
# workspace and tempest.conf


def write_workspace(args, venv: Path, workdir: Path, pkg_dir: Path) -> Path:
    for sub in ("etc", "logs", "tempest_lock"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    (workdir / ".stestr.conf").write_text(
        "[DEFAULT]\ntest_path={}\ntop_dir={}\ngroup_regex=([^\\.]*\\.)*\n".format(
            pkg_dir / "test_discover", pkg_dir.parent
        )
    )
    if not (workdir / ".stestr").is_dir():
        subprocess.run(
            [str(venv / "bin" / "stestr"), "init"],
            cwd=workdir,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    conf = build_conf(args, workdir)
    path = workdir / "etc" / "tempest.conf"
    with open(path, "w") as fh:
        fh.write("# written by onestack tests/conformance/run_tempest.py\n")
        conf.write(fh)
    # The admin password is in there.
    os.chmod(path, 0o600)
    return path


def build_conf(args, workdir: Path) -> configparser.RawConfigParser:
    c = configparser.RawConfigParser()
    c.optionxform = str  # keep key case

    def put(section, **kv):
        if section != "DEFAULT" and not c.has_section(section):
            c.add_section(section)
        for k, v in kv.items():
            c.set(section, k, str(v))

    svc = set(args.services)
    uri_v3 = args.auth_url.rstrip("/")
    put(
        "DEFAULT",
        log_dir=workdir / "logs",
        log_file="tempest.log",
        debug=str(not args.no_debug_log).lower(),
        use_stderr="false",
    )
    put("oslo_concurrency", lock_path=workdir / "tempest_lock")
    put(
        "auth",
        admin_username=args.admin_user,
        admin_password=args.admin_password,
        admin_project_name=args.admin_project,
        admin_domain_name=args.admin_domain,
        admin_user_domain_name=args.admin_domain,
        admin_project_domain_name=args.admin_domain,
        use_dynamic_credentials="true",
        default_credentials_domain_name=args.admin_domain,
        create_isolated_networks=str("network" in svc).lower(),
    )
    put(
        "identity",
        uri_v3=uri_v3,
        auth_version="v3",
        region=args.region,
        catalog_type="identity",
        v3_endpoint_type="public",
        admin_role="admin",
        default_domain_id="default",
        disable_ssl_certificate_validation=str(args.insecure).lower(),
    )
    put("identity-feature-enabled")
    for name, val in list(TEMPEST_FEATURES.items()) + [(k, "true") for k in HARNESS_FEATURES]:
        sec, key = name.split(".", 1)
        c.set(sec, key, args.features.get(name, val))
    for name, val in args.features.items():
        sec, key = name.split(".", 1)
        put(sec, **{key: val})
    put(
        "service_available",
        horizon="false",
        **{SERVICES[s][0]: str(s in svc).lower() for s in SERVICES if SERVICES[s][0]},
    )
    # No guest access: never try to ssh/ping into servers.
    put("validation", run_validation="false", connect_method="fixed")
    put("service-clients", http_timeout=60)
    # Stubs for the other services; fill them with --set SECTION.KEY=VALUE.
    put("image", region=args.region)
    put("image-feature-enabled")
    put("compute", region=args.region, flavor_ref="1", flavor_ref_alt="2")
    put("compute-feature-enabled")
    put("network", region=args.region, project_networks_reachable="false")
    put("network-feature-enabled")
    put("volume", region=args.region)
    put("volume-feature-enabled")
    put("object-storage", region=args.region)
    put("enforce_scope")
    for sec, key, val in args.sets:
        put(sec, **{key: val})
    return c


# --------------------------------------------------------------------------
# selection


def read_regex_file(path: Path) -> list:
    pats = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pats.append(line)
    return pats


def compile_any(pats, what):
    try:
        return [re.compile(p) for p in pats]
    except re.error as e:
        die(f"bad regex in {what}: {e}")


def list_all_tests(venv: Path, workdir: Path, conf: Path) -> list:
    r = subprocess.run(
        [str(venv / "bin" / "tempest"), "run", "--config-file", str(conf), "--list-tests"],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        die("tempest could not list its tests:\n" + (r.stderr or r.stdout)[-3000:])
    ids = [ln.strip() for ln in r.stdout.splitlines()]
    return [i for i in ids if re.match(r"^[A-Za-z_][\w.]*\.\w+(\[.*\])?$", i)]


def select_tests(args, all_ids):
    """Return (to_run, feature_skipped {id: reason})."""
    prefixes = [SERVICES[s][1] for s in args.services]
    svc_re = re.compile(r"^tempest\.api\.({})\.".format("|".join(prefixes)))
    checks = []
    if args.regex:
        checks.append(compile_any([args.regex], "--regex"))
    if args.include_list:
        checks.append(compile_any(read_regex_file(Path(args.include_list)), args.include_list))
    if args.interop:
        if not args.interop_file.exists():
            die(f"interop list {args.interop_file} not found")
        pats = [
            p for p in read_regex_file(args.interop_file) if svc_re.match(p.replace("\\.", "."))
        ]
        checks.append(compile_any(pats, str(args.interop_file)))
    if not checks:
        checks.append([svc_re])
    excl = compile_any([args.exclude_regex], "--exclude-regex") if args.exclude_regex else []

    selected = [
        t
        for t in all_ids
        if all(any(r.search(t) for r in group) for group in checks)
        and not any(r.search(t) for r in excl)
    ]
    off = {
        name: re.compile(rx)
        for name, rx in HARNESS_FEATURES.items()
        if args.features.get(name, "true") == "false"
    }
    to_run, skipped = [], {}
    for t in selected:
        hit = next((n for n, r in off.items() if r.search(t)), None)
        if hit:
            skipped[t] = f"feature {hit} disabled (--feature {hit}=false)"
        else:
            to_run.append(t)
    return to_run, skipped


# --------------------------------------------------------------------------
# subunit v2 reading (own minimal parser)

_SIG = 0xB3
_F_TEST_ID, _F_ROUTE, _F_TS, _F_RUNNABLE = 0x0800, 0x0400, 0x0200, 0x0100
_F_TAGS, _F_FILE, _F_MIME, _F_EOF = 0x0080, 0x0040, 0x0020, 0x0010
_STATUS = {
    0: None,
    1: "exists",
    2: "inprogress",
    3: "success",
    4: "uxsuccess",
    5: "skip",
    6: "fail",
    7: "xfail",
}


def _varint(buf, pos):
    first = buf[pos]
    extra = first >> 6
    val = first & 0x3F
    for i in range(extra):
        val = (val << 8) | buf[pos + 1 + i]
    return val, pos + 1 + extra


def _utf8(buf, pos):
    n, pos = _varint(buf, pos)
    return bytes(buf[pos : pos + n]).decode("utf-8", "replace"), pos + n


def iter_subunit(data: bytes):
    """Yield (test_id, status, file_name, file_bytes) for each v2 packet."""
    pos, end = 0, len(data)
    while pos < end:
        if data[pos] != _SIG:
            nxt = data.find(bytes([_SIG]), pos + 1)
            if nxt < 0:
                return
            pos = nxt
            continue
        try:
            flags = struct.unpack(">H", data[pos + 1 : pos + 3])[0]
            length, body = _varint(data, pos + 3)
        except (struct.error, IndexError):
            return
        packet = data[pos : pos + length]
        if (
            (flags >> 12) != 2
            or len(packet) != length
            or length < 7
            or zlib.crc32(packet[:-4]) & 0xFFFFFFFF != struct.unpack(">I", packet[-4:])[0]
        ):
            pos += 1  # not a packet after all; resynchronise
            continue
        p = body - pos
        test_id = fname = fbytes = None
        if flags & _F_TS:
            _, p = _varint(packet, p + 4)
        if flags & _F_TEST_ID:
            test_id, p = _utf8(packet, p)
        if flags & _F_TAGS:
            count, p = _varint(packet, p)
            for _ in range(count):
                _, p = _utf8(packet, p)
        if flags & _F_MIME:
            _, p = _utf8(packet, p)
        if flags & _F_FILE:
            fname, p = _utf8(packet, p)
            n, p = _varint(packet, p)
            fbytes = bytes(packet[p : p + n])
        yield test_id, _STATUS[flags & 0x7], fname, fbytes
        pos += length


def read_results(data: bytes):
    """Map test id -> {'status': pass|fail|skip, 'details': {name: text}}."""
    res = {}
    for test_id, status, fname, fbytes in iter_subunit(data):
        if not test_id:
            continue
        ent = res.setdefault(test_id, {"status": None, "details": {}})
        if fname is not None and fbytes:
            d = ent["details"]
            d[fname] = d.get(fname, "") + fbytes.decode("utf-8", "replace")
        if status in ("success", "xfail"):
            ent["status"] = "pass"
        elif status in ("fail", "uxsuccess"):
            ent["status"] = "fail"
        elif status == "skip":
            ent["status"] = "skip"
    return {k: v for k, v in res.items() if v["status"]}


def one_line_reason(ent) -> str:
    d = ent.get("details", {})
    if ent["status"] == "skip":
        txt = d.get("reason", "").strip()
        return txt.splitlines()[0] if txt else "skipped"
    tb = d.get("traceback", "") or next(iter(d.values()), "")
    lines = [ln.rstrip() for ln in tb.splitlines() if ln.strip()]
    if not lines:
        return "failed (no traceback recorded)"
    # The exception starts at the first unindented line after the last frame.
    start = None
    for i, ln in enumerate(lines):
        if ln.startswith("Traceback"):
            start = None
        elif (
            start is None
            and not ln.startswith((" ", "\t"))
            and i > 0
            and any(x.startswith("Traceback") for x in lines[:i])
        ):
            start = i
    msg = lines[start:] if start is not None else lines[-1:]
    text = " | ".join(s.strip() for s in msg[:2])
    return text if len(text) <= 300 else text[:297] + "..."


def latest_stream(venv: Path, workdir: Path) -> bytes:
    """The last run as subunit v2 (stestr's repository itself keeps v1 text)."""
    r = subprocess.run(
        [str(venv / "bin" / "stestr"), "last", "--subunit"], cwd=workdir, capture_output=True
    )
    if not r.stdout:
        die(
            "no stestr results found in {}: {}".format(
                workdir / ".stestr", r.stderr.decode("utf-8", "replace")[-500:]
            )
        )
    return r.stdout


CLASS_FIXTURE = re.compile(r"^(setUpClass|tearDownClass) \((.+)\)$")


def class_of(test_id: str) -> str:
    return test_id.split("[", 1)[0].rsplit(".", 1)[0]


def combine(selected, raw, feature_skipped):
    """Per selected test: (status, reason); plus extra fixture failures."""
    fixtures = {}
    extra = {}
    for tid, ent in raw.items():
        m = CLASS_FIXTURE.match(tid)
        if m:
            fixtures.setdefault(m.group(2), {})[m.group(1)] = ent
    out = {}
    for t in selected:
        if t in feature_skipped:
            out[t] = ("skip", feature_skipped[t])
        elif t in raw:
            st = raw[t]["status"]
            out[t] = (st, "" if st == "pass" else one_line_reason(raw[t]))
        else:
            setup = fixtures.get(class_of(t), {}).get("setUpClass")
            if setup and setup["status"] == "pass":
                out[t] = ("fail", "no result recorded although setUpClass passed")
            elif setup:
                why = one_line_reason(setup)
                out[t] = (
                    setup["status"],
                    ("setUpClass: " + why) if setup["status"] == "fail" else why,
                )
            else:
                out[t] = ("fail", "no result recorded (worker crashed or run aborted?)")
    for cls, kinds in fixtures.items():
        td = kinds.get("tearDownClass")
        if td and td["status"] == "fail":
            extra[f"tearDownClass ({cls})"] = one_line_reason(td)
    return out, extra


# --------------------------------------------------------------------------
# HTTP 500 scan

REQ_LINE = re.compile(r"Request \(([^)]*)\): (\d{3}) ([A-Z]+) (\S+)")


def scan_http_500(log_path: Path):
    hits = []
    if not log_path.exists():
        return hits
    with open(log_path, errors="replace") as fh:
        for line in fh:
            # Tempest's rest client logs one such INFO line per response.
            if "rest_client" not in line or "Request (" not in line:
                continue
            m = REQ_LINE.search(line)
            if m and m.group(2) == "500":
                hits.append((m.group(1), m.group(3), m.group(4)))
    return hits


# --------------------------------------------------------------------------


def run_tempest(venv, workdir, conf, load_list, concurrency, quiet):
    cmd = [
        str(venv / "bin" / "tempest"),
        "run",
        "--config-file",
        str(conf),
        "--load-list",
        str(load_list),
    ]
    cmd += ["--serial"] if concurrency == 1 else ["--concurrency", str(concurrency)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(workdir / "tempest-run.log", "w") as fh:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        for line in proc.stdout:
            fh.write(line)
            if not quiet:
                sys.stdout.write(line)
                sys.stdout.flush()
        return proc.wait()


def pct(a, b):
    return 100.0 * a / b if b else 0.0


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    catalog = preflight(args)
    log("cloud: {} answers; catalog types: {}".format(args.auth_url, ", ".join(catalog) or "-"))
    want = {
        "image": "image",
        "compute": "compute",
        "network": "network",
        "volume": ("volumev3", "block-storage", "volume"),
        "object-storage": "object-store",
    }
    for s in args.services:
        types = want.get(s)
        if types and not set([types] if isinstance(types, str) else types) & set(catalog):
            log(f"warning: --services has {s} but the catalog has no such endpoint")

    venv = ensure_venv(Path(os.path.expanduser(args.venv)))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="onestack-tempest-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"workdir: {workdir}")
    conf = write_workspace(args, venv, workdir, tempest_package_dir(venv))
    log(f"tempest.conf: {conf}")

    all_ids = list_all_tests(venv, workdir, conf)
    to_run, feature_skipped = select_tests(args, all_ids)
    selected = to_run + list(feature_skipped)
    if not selected:
        die("the selection matches no Tempest test")
    if args.list:
        for t in sorted(selected):
            print(t + ("  # " + feature_skipped[t] if t in feature_skipped else ""))
        print(f"selected: {len(selected)} ({len(to_run)} to run)")
        return 0
    load_list = workdir / "selected-tests.txt"
    load_list.write_text("".join(t + "\n" for t in to_run))
    log(
        f"selected {len(selected)} tests ({len(to_run)} to run, "
        f"{len(feature_skipped)} skipped by harness feature switches)"
    )

    tlog = workdir / "logs" / "tempest.log"
    if tlog.exists() and not args.reparse:
        tlog.unlink()
    raw = {}
    rc = None
    t_run = time.time()
    if to_run:
        if not args.reparse:
            rc = run_tempest(venv, workdir, conf, load_list, args.concurrency, args.quiet)
        raw = read_results(latest_stream(venv, workdir))
    run_secs = time.time() - t_run

    results, fixture_fail = combine(selected, raw, feature_skipped)
    n_pass = sum(1 for s, _ in results.values() if s == "pass")
    n_fail = sum(1 for s, _ in results.values() if s == "fail")
    n_skip = sum(1 for s, _ in results.values() if s == "skip")
    http500 = scan_http_500(tlog)

    (workdir / "results.json").write_text(
        json.dumps({t: s for t, (s, _) in sorted(results.items())}, indent=1) + "\n"
    )
    (workdir / "results-detail.json").write_text(
        json.dumps(
            {
                "auth_url": args.auth_url,
                "services": args.services,
                "tempest_version": TEMPEST_VERSION,
                "tempest_exit_code": rc,
                "run_seconds": round(run_secs, 1),
                "counts": {
                    "selected": len(selected),
                    "passed": n_pass,
                    "failed": n_fail,
                    "skipped": n_skip,
                    "http_500": len(http500),
                },
                "tests": {t: {"status": s, "reason": r} for t, (s, r) in sorted(results.items())},
                "class_fixture_failures": fixture_fail,
                "http_500": [{"caller": c, "method": m, "url": u} for c, m, u in http500],
            },
            indent=1,
        )
        + "\n"
    )

    log("")
    log("=" * 70)
    for t, (s, r) in sorted(results.items()):
        if s == "fail":
            log(f"FAIL {t}: {r}")
    for t, r in sorted(fixture_fail.items()):
        log(f"FAIL {t}: {r} (class fixture; not counted)")
    for caller, method, url in http500:
        log(f"HTTP-500 {method} {url} ({caller})")
    if any("RemoteDisconnected" in r for _, r in results.values()):
        log(
            "hint: the server closed kept-alive connections that Tempest reused "
            "(RemoteDisconnected); make its idle keep-alive timeout longer than Tempest's "
            "pauses between requests (uwsgi: --socket-timeout)"
        )
    non_skipped = n_pass + n_fail
    log(
        "results: {}  (tempest.log: {}; {:.0f}s run, {:.0f}s total)".format(
            workdir / "results.json", tlog, run_secs, time.time() - t0
        )
    )
    log(f"http-500: {len(http500)}")
    log(
        f"pass: {pct(n_pass, len(selected)):.1f}% of {len(selected)} selected, "
        f"{pct(n_pass, non_skipped):.1f}% of {non_skipped} not skipped"
    )
    code = 0
    if args.min_pass_percent is not None and pct(n_pass, len(selected)) < args.min_pass_percent:
        log(f"below --min-pass-percent {args.min_pass_percent:.1f}")
        code = 1
    if args.fail_on_http_500 and http500:
        log("HTTP 500 responses seen and --fail-on-http-500 given")
        code = 1
    log(f"tempest: {n_pass} passed, {n_fail} failed, {n_skip} skipped")
    return code


if __name__ == "__main__":
    sys.exit(main())
