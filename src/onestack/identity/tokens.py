"""Fernet tokens and their key repository.

A token is a Fernet message (AES-128-CBC + HMAC-SHA256, from ``cryptography``) whose payload is
a compact msgpack list: who, how, which scope, until when, and the audit chain. Everything a
validation needs is inside the token, so validating never reads the database; revocation
events and the user/role/catalog data come from the in-memory cache.

Keys live in a repository directory like Keystone's: ``0`` is the staged key, the highest
number is the primary (encrypts), every key decrypts. ``rotate()`` promotes the staged key,
stages a new one and drops the oldest beyond ``max_active_keys``.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PAYLOAD_VERSION = 1

METHOD_BITS = {
    "password": 1,
    "token": 2,
    "application_credential": 4,
    "totp": 8,
    "external": 16,
    "mapped": 32,
    "oauth1": 64,
}

SCOPE_NONE, SCOPE_PROJECT, SCOPE_DOMAIN, SCOPE_SYSTEM = 0, 1, 2, 3


class TokenError(Exception):
    """The token cannot be decrypted or parsed."""


#: What :meth:`FernetCodec.encrypt` produces: unpadded URL-safe base64.
_TOKEN_TEXT = re.compile(r"[A-Za-z0-9_-]+")


def new_audit_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")


def _pack_id(value: str | None) -> bytes | str | None:
    if value is None:
        return None
    if len(value) == 32:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    return value


def _unpack_id(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.hex()
    return value


def _pack_audit(value: str) -> bytes | str:
    try:
        raw = base64.urlsafe_b64decode(value + "==")
        if len(raw) == 16:
            return raw
    except (ValueError, TypeError):
        pass
    return value


def _unpack_audit(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")
    return value


@dataclass
class TokenData:
    """What a token says, decoded."""

    user_id: str
    methods: list[str]
    expires_at: float
    issued_at: float
    audit_ids: list[str]
    project_id: str | None = None
    domain_id: str | None = None
    system: str | None = None
    app_cred_id: str | None = None
    trust_id: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def scope_type(self) -> int:
        if self.project_id:
            return SCOPE_PROJECT
        if self.domain_id:
            return SCOPE_DOMAIN
        if self.system:
            return SCOPE_SYSTEM
        return SCOPE_NONE


class KeyRepository:
    """A directory of Fernet keys (``0`` staged, highest primary)."""

    def __init__(self, path: Path, max_active_keys: int = 3) -> None:
        self.path = path
        self.max_active_keys = max(2, max_active_keys)

    def _indexes(self) -> list[int]:
        if not self.path.exists():
            return []
        return sorted(int(p.name) for p in self.path.iterdir() if p.name.isdigit())

    def _write(self, index: int) -> None:
        tmp = self.path / f".{index}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path / str(index))

    def setup(self) -> None:
        """Create the repository with a staged and a primary key, if it has none."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self._indexes():
            self._write(0)
            self._write(1)

    def rotate(self) -> None:
        """Promote the staged key to primary, stage a new key, prune the oldest."""
        self.setup()
        indexes = self._indexes()
        new_primary = max(indexes) + 1
        os.replace(self.path / "0", self.path / str(new_primary))
        self._write(0)
        keys = [i for i in self._indexes() if i != 0]
        while len(keys) + 1 > self.max_active_keys:
            (self.path / str(keys.pop(0))).unlink()

    def all_keys(self) -> list[bytes]:
        """Keys, primary first."""
        indexes = self._indexes()
        if not indexes:
            raise TokenError(f"no Fernet keys in {self.path}")
        order = sorted((i for i in indexes if i != 0), reverse=True) + [0]
        return [(self.path / str(i)).read_bytes().strip() for i in order]


class FernetCodec:
    """Encrypts/decrypts payloads with the repository's keys (reloaded on ``reload()``)."""

    def __init__(self, repo: KeyRepository) -> None:
        self.repo = repo
        self._fernet: MultiFernet | None = None

    def reload(self) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in self.repo.all_keys()])

    @property
    def fernet(self) -> MultiFernet:
        if self._fernet is None:
            self.reload()
        assert self._fernet is not None
        return self._fernet

    def encrypt(self, data: bytes) -> str:
        return self.fernet.encrypt(data).rstrip(b"=").decode("ascii")

    def decrypt(self, token: str) -> bytes:
        """The payload of a token as :meth:`encrypt` writes it: URL-safe base64 without
        ``=`` padding. Any other spelling (padding appended, other characters) is refused,
        so that one token has exactly one accepted form."""
        if not _TOKEN_TEXT.fullmatch(token):
            raise TokenError("malformed token")
        raw = token.encode("ascii")
        raw += b"=" * (-len(raw) % 4)
        try:
            return self.fernet.decrypt(raw)
        except (InvalidToken, ValueError, TypeError) as exc:
            raise TokenError("invalid token") from exc


class TokenFormatter:
    """Turns ``TokenData`` into a Fernet token string and back."""

    def __init__(self, codec: FernetCodec) -> None:
        self.codec = codec

    def issue(self, data: TokenData) -> str:
        bits = 0
        for m in data.methods:
            bits |= METHOD_BITS.get(m, 0)
        if data.project_id:
            scope = (SCOPE_PROJECT, _pack_id(data.project_id))
        elif data.domain_id:
            scope = (SCOPE_DOMAIN, _pack_id(data.domain_id))
        elif data.system:
            scope = (SCOPE_SYSTEM, data.system)
        else:
            scope = (SCOPE_NONE, None)
        payload = [
            PAYLOAD_VERSION,
            _pack_id(data.user_id),
            bits,
            scope[0],
            scope[1],
            data.expires_at,
            data.issued_at,
            [_pack_audit(a) for a in data.audit_ids],
            _pack_id(data.app_cred_id),
        ]
        if data.trust_id:
            payload.append(_pack_id(data.trust_id))
        return self.codec.encrypt(msgpack.packb(payload, use_bin_type=True))

    def parse(self, token: str) -> TokenData:
        if not token or len(token) > 1024:
            raise TokenError("malformed token")
        raw = self.codec.decrypt(token)
        try:
            payload = msgpack.unpackb(raw, raw=False)
            version, user, bits, scope_type, scope_id, exp, iat, audits, app_cred = payload[:9]
            trust = payload[9] if len(payload) > 9 else None
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise TokenError("malformed token payload") from exc
        if version != PAYLOAD_VERSION:
            raise TokenError("unknown token version")
        methods = [m for m, b in METHOD_BITS.items() if bits & b]
        data = TokenData(
            user_id=_unpack_id(user) or "",
            methods=methods,
            expires_at=float(exp),
            issued_at=float(iat),
            audit_ids=[_unpack_audit(a) for a in audits],
            app_cred_id=_unpack_id(app_cred),
            trust_id=_unpack_id(trust),
        )
        if scope_type == SCOPE_PROJECT:
            data.project_id = _unpack_id(scope_id)
        elif scope_type == SCOPE_DOMAIN:
            data.domain_id = _unpack_id(scope_id)
        elif scope_type == SCOPE_SYSTEM:
            data.system = scope_id
        return data
