from __future__ import annotations

import time
import uuid

import pytest

from onestack.identity.tokens import (
    FernetCodec,
    KeyRepository,
    TokenData,
    TokenError,
    TokenFormatter,
    new_audit_id,
)


def _data(**kw: object) -> TokenData:
    now = time.time()
    base = dict(user_id=uuid.uuid4().hex, methods=["password", "token"], expires_at=now + 3600,
                issued_at=now, audit_ids=[new_audit_id(), new_audit_id()],
                project_id=uuid.uuid4().hex)
    base.update(kw)
    return TokenData(**base)  # type: ignore[arg-type]


def test_roundtrip_and_length(tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo = KeyRepository(tmp_path / "keys")
    repo.setup()
    fmt = TokenFormatter(FernetCodec(repo))
    for data in (_data(), _data(project_id=None, domain_id="default"),
                 _data(project_id=None, system="all"), _data(app_cred_id=uuid.uuid4().hex),
                 _data(project_id=None, user_id="not-hex-id")):
        tok = fmt.issue(data)
        assert len(tok) < 255
        assert fmt.parse(tok) == data


def test_rotation_keeps_recent_tokens_valid(tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo = KeyRepository(tmp_path / "keys", max_active_keys=3)
    repo.setup()
    fmt = TokenFormatter(FernetCodec(repo))
    tok = fmt.issue(_data())
    repo.rotate()
    fmt.codec.reload()
    assert fmt.parse(tok).user_id  # previous primary still decrypts
    repo.rotate()
    repo.rotate()
    fmt.codec.reload()
    with pytest.raises(TokenError):
        fmt.parse(tok)  # its key has been pruned
    assert len(list((tmp_path / "keys").iterdir())) == 3


@pytest.mark.parametrize("bad", ["", "x", "gAAAAA" + "A" * 100, "é" * 10, "a" * 5000])
def test_garbage_is_rejected(tmp_path, bad: str) -> None:  # type: ignore[no-untyped-def]
    repo = KeyRepository(tmp_path / "keys")
    repo.setup()
    with pytest.raises(TokenError):
        TokenFormatter(FernetCodec(repo)).parse(bad)


@pytest.mark.parametrize("suffix", ["=", "==", "===", "====", "\n", " ", "+", "/"])
def test_token_spelled_otherwise_is_rejected(tmp_path, suffix: str) -> None:  # type: ignore[no-untyped-def]
    """One token has one accepted spelling: ``=`` padding or other characters appended to a
    valid token make it invalid (a 401 at the API), as unpadded tokens are all we issue."""
    repo = KeyRepository(tmp_path / "keys")
    repo.setup()
    fmt = TokenFormatter(FernetCodec(repo))
    tok = fmt.issue(_data())
    assert fmt.parse(tok)
    with pytest.raises(TokenError):
        fmt.parse(tok + suffix)
