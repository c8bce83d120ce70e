"""Unit tests for the Tempest harness (no Tempest, no cloud needed)."""

import importlib.util
import struct
import sys
import zlib
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "onestack_run_tempest", Path(__file__).with_name("run_tempest.py")
)
rt = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = rt
_spec.loader.exec_module(rt)

BASE = ["--auth-url", "http://127.0.0.1:5000/v3", "--admin-password", "pw"]


# -- a tiny subunit v2 writer, enough to feed the reader ------------------


def _varint(n):
    if n < 0x40:
        return bytes([n])
    if n < 0x4000:
        return struct.pack(">H", n | 0x4000)
    if n < 0x400000:
        return bytes([0x80 | (n >> 16)]) + struct.pack(">H", n & 0xFFFF)
    return struct.pack(">I", n | 0xC0000000)


def _str(s):
    b = s.encode()
    return _varint(len(b)) + b


STATUS = {
    "exists": 1,
    "inprogress": 2,
    "success": 3,
    "uxsuccess": 4,
    "skip": 5,
    "fail": 6,
    "xfail": 7,
}


def packet(test_id=None, status=None, file_name=None, content=b"", tags=(), ts=True):
    flags = 0x2000
    body = b""
    if ts:
        flags |= 0x0200
        body += struct.pack(">I", 1700000000) + _varint(5)
    if test_id is not None:
        flags |= 0x0800
        body += _str(test_id)
    if tags:
        flags |= 0x0080
        body += _varint(len(tags)) + b"".join(_str(t) for t in tags)
    if file_name is not None:
        flags |= 0x0020 | 0x0040
        body += _str("text/plain;charset=utf8") + _str(file_name) + _varint(len(content)) + content
    if status:
        flags |= STATUS[status]
    for extra in (1, 2, 3, 4):
        total = 3 + extra + len(body) + 4
        if len(_varint(total)) == extra:
            break
    head = bytes([0xB3]) + struct.pack(">H", flags) + _varint(total) + body
    return head + struct.pack(">I", zlib.crc32(head) & 0xFFFFFFFF)


TB = (
    b'Traceback (most recent call last):\n  File "x.py", line 1, in f\n    boom()\n'
    b"tempest.lib.exceptions.NotFound: Object not found\nDetails: {'code': 404}\n"
)


def test_subunit_reader_statuses_and_details():
    a = "tempest.api.identity.v3.test_x.XTest.test_a[id-1]"
    b = "tempest.api.identity.v3.test_x.XTest.test_b[id-2,smoke]"
    c = "tempest.api.identity.v3.test_x.XTest.test_c[id-3]"
    stream = b"".join(
        [
            packet(a, "inprogress"),
            packet(a, "success", tags=("worker-0",)),
            b"noise between packets\n",
            packet(b, "inprogress"),
            packet(b, None, "traceback", TB),
            packet(b, "fail"),
            packet(c, "inprogress"),
            packet(c, "skip", "reason", b"Feature off.\n"),
            packet(None, None, "stdout", b"x" * 20000),  # long (3-byte length) packet, no id
        ]
    )
    res = rt.read_results(stream)
    assert res[a]["status"] == "pass"
    assert res[b]["status"] == "fail"
    assert res[c]["status"] == "skip"
    assert (
        rt.one_line_reason(res[b])
        == "tempest.lib.exceptions.NotFound: Object not found | Details: {'code': 404}"
    )
    assert rt.one_line_reason(res[c]) == "Feature off."


def test_corrupt_packet_is_skipped():
    good = packet("t.a", "success")
    bad = bytearray(packet("t.b", "success"))
    bad[-1] ^= 0xFF
    assert list(rt.read_results(bytes(bad) + good)) == ["t.a"]


def test_combine_expands_class_fixtures():
    cls = "tempest.api.identity.v3.test_users.UsersTest"
    other = "tempest.api.identity.v3.test_roles.RolesTest"
    sel = [
        cls + ".test_1[id-1]",
        cls + ".test_2[id-2]",
        other + ".test_r[id-3]",
        "tempest.api.identity.v3.test_t.T.test_lost[id-4]",
        "f.F.test_off[id-5]",
    ]
    raw = {
        f"setUpClass ({cls})": {"status": "skip", "details": {"reason": "Nope."}},
        f"setUpClass ({other})": {"status": "fail", "details": {"traceback": TB.decode()}},
        f"tearDownClass ({other})": {"status": "fail", "details": {"traceback": TB.decode()}},
    }
    out, extra = rt.combine(sel, raw, {"f.F.test_off[id-5]": "feature off"})
    assert out[cls + ".test_1[id-1]"] == ("skip", "Nope.")
    assert out[other + ".test_r[id-3]"][0] == "fail"
    assert out[other + ".test_r[id-3]"][1].startswith("setUpClass: tempest.lib.exceptions.NotFound")
    assert out["tempest.api.identity.v3.test_t.T.test_lost[id-4]"][0] == "fail"
    assert out["f.F.test_off[id-5]"] == ("skip", "feature off")
    assert list(extra) == [f"tearDownClass ({other})"]


def test_http_500_scan(tmp_path):
    log = tmp_path / "tempest.log"
    log.write_text(
        "2024-01-01 1 INFO tempest.lib.common.rest_client [req-1 ] Request (UsersTest:test_a): "
        "201 POST http://127.0.0.1:5000/v3/users 0.010s\n"
        "2024-01-01 1 INFO tempest.lib.common.rest_client [req-2 ] Request (UsersTest:test_b): "
        "500 GET http://127.0.0.1:5000/v3/users/x 0.010s\n"
        "        Body: b'Request (fake): 500 in a body line is not a request line'\n"
    )
    assert rt.scan_http_500(log) == [
        ("UsersTest:test_b", "GET", "http://127.0.0.1:5000/v3/users/x")
    ]
    assert rt.scan_http_500(tmp_path / "missing.log") == []


def test_conf_defaults_and_overrides(tmp_path):
    args = rt.parse_args(
        BASE
        + [
            "--services",
            "identity,image",
            "--region",
            "R2",
            "--feature",
            "identity-feature-enabled.trust=false",
            "--feature",
            "identity-feature-enabled.project_tags=off",
            "--set",
            "compute.image_ref=abc",
            "--set",
            "image-feature-enabled.api_v1=false",
        ]
    )
    c = rt.build_conf(args, tmp_path)
    assert c.get("identity", "uri_v3") == "http://127.0.0.1:5000/v3"
    assert c.get("identity", "auth_version") == "v3"
    assert c.get("identity", "region") == "R2"
    assert c.get("auth", "use_dynamic_credentials") == "true"
    assert c.get("auth", "admin_password") == "pw"
    f = "identity-feature-enabled"
    assert c.get(f, "api_v2") == "false"
    assert c.get(f, "trust") == "false"
    assert c.get(f, "access_rules") == "true"
    assert c.get(f, "project_tags") == "false"
    assert c.get("service_available", "glance") == "true"
    for svc in ("nova", "neutron", "cinder", "swift", "horizon"):
        assert c.get("service_available", svc) == "false"
    assert c.get("compute", "image_ref") == "abc"
    assert c.get("image-feature-enabled", "api_v1") == "false"
    assert c.get("validation", "run_validation") == "false"


def test_bad_feature_value_rejected():
    with pytest.raises(SystemExit):
        rt.parse_args(BASE + ["--feature", "identity-feature-enabled.trust=maybe"])
    with pytest.raises(SystemExit):
        rt.parse_args(BASE + ["--set", "novalue"])
    with pytest.raises(SystemExit):
        rt.parse_args(BASE + ["--services", "identity,dns"])


ALL = [
    "tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token[id-1]",
    "tempest.api.identity.admin.v3.test_project_tags.IdentityV3ProjectTagsTest.test_list_update",
    "tempest.api.identity.admin.v3.test_users.UsersV3TestJSON.test_get_user[id-2]",
    "tempest.api.compute.flavors.test_flavors.FlavorsV2TestJSON.test_list_flavors[id-3,smoke]",
    "tempest.api.image.v2.test_images.ListImagesTest.test_list_images[id-4]",
    "tempest.scenario.test_minimum_basic.TestMinimumBasicScenario.test_minimum_basic[id-5]",
]


def test_default_selection_is_api_of_chosen_services():
    args = rt.parse_args(BASE + ["--services", "identity,image"])
    run, skipped = rt.select_tests(args, ALL)
    assert run == [ALL[0], ALL[1], ALL[2], ALL[4]] and skipped == {}


def test_interop_selection_restricted_to_services(tmp_path):
    f = tmp_path / "interop.regex"
    f.write_text(
        "# comment\n"
        "tempest\\.api\\.identity\\.v3\\.test_tokens\\.TokensV3Test\\.test_create_token\\[\n"
        "tempest\\.api\\.compute\\.flavors\\.test_flavors\\.FlavorsV2TestJSON\\.test_list_flavors\\[\n"
    )
    args = rt.parse_args(BASE + ["--interop", "--interop-file", str(f)])
    assert rt.select_tests(args, ALL)[0] == [ALL[0]]
    args = rt.parse_args(BASE + ["--interop", "--interop-file", str(f), "--services", "compute"])
    assert rt.select_tests(args, ALL)[0] == [ALL[0], ALL[3]]


def test_regex_include_list_exclude_and_harness_feature(tmp_path):
    inc = tmp_path / "inc.txt"
    inc.write_text("test_project_tags\ntest_users\ntest_tokens\n")
    args = rt.parse_args(
        BASE
        + [
            "--regex",
            "identity",
            "--include-list",
            str(inc),
            "--exclude-regex",
            "test_tokens",
            "--feature",
            "identity-feature-enabled.project_tags=false",
        ]
    )
    run, skipped = rt.select_tests(args, ALL)
    assert run == [ALL[2]]
    assert list(skipped) == [ALL[1]]
