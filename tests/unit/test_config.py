from __future__ import annotations

import pytest

from onestack.config import ConfigError, load_settings


def test_layers(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "onestack.toml").write_text('bind = "0.0.0.0"\n[identity]\nport = 5001\n')
    monkeypatch.setenv("ONESTACK_TOKEN_EXPIRATION", "60")
    s = load_settings(tmp_path, public_host="cloud.example")
    assert s.identity_port == 5001 and s.bind == "0.0.0.0" and s.token_expiration == 60
    assert s.url("identity") == "http://cloud.example:5001"
    assert s.db_url.startswith("sqlite:///") and str(tmp_path) in s.db_url


def test_unknown_and_bad_values(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "onestack.toml").write_text("no_such_setting = 1\n")
    with pytest.raises(ConfigError):
        load_settings(tmp_path)
    (tmp_path / "onestack.toml").write_text("")
    monkeypatch.setenv("ONESTACK_IDENTITY_PORT", "not-a-number")
    with pytest.raises(ConfigError):
        load_settings(tmp_path)
