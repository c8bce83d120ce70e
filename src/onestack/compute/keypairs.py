"""Key pairs of the compute service: SSH and x509 keys, imported or generated, with Nova's
fingerprints (``KeypairStore``, part of ``ComputeManager``)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any, TypeVar

from sqlalchemy import func, select

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, Conflict, NotFound
from onestack.common.timeutils import utcnow
from onestack.compute import quotas
from onestack.compute.store import ManagerState
from onestack.db.compute import KeyPair

T = TypeVar("T")

def fingerprint(public_key: str) -> str:
    """The MD5 fingerprint (``aa:bb:…``) of an OpenSSH public key (400 when malformed)."""
    parts = public_key.strip().split()
    if len(parts) < 2:
        raise BadRequest("Keypair data is invalid: failed to generate fingerprint")
    try:
        blob = base64.b64decode(parts[1].encode(), validate=True)
        from cryptography.hazmat.primitives.serialization import load_ssh_public_key

        load_ssh_public_key(public_key.strip().encode())
    except Exception as exc:  # noqa: BLE001 - any parse failure is bad input
        raise BadRequest("Keypair data is invalid: failed to generate fingerprint") from exc
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def x509_fingerprint(cert_pem: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except Exception as exc:  # noqa: BLE001
        raise BadRequest("Keypair data is invalid: failed to generate fingerprint") from exc
    digest = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - what Nova shows
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def generate_keypair() -> tuple[str, str]:
    """A new RSA 2048 key: (private key PEM, OpenSSH public key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public + " Generated-by-Nova"


def generate_x509(user_id: str, project_id: str) -> tuple[str, str]:
    """A new self-signed certificate: (private key PEM, certificate PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user_id or "onestack"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, project_id or "onestack")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    return private, cert.public_bytes(serialization.Encoding.PEM).decode()


class KeypairStore(ManagerState):
    """Key pair records (mixed into ``ComputeManager``)."""

    # ================================================================== keypairs
    def create_keypair(self, ctx: RequestContext, user_id: str, name: str,
                       public_key: str | None, key_type: str) -> dict[str, Any]:
        private = None
        if public_key is None:
            if key_type == "x509":
                private, public_key = generate_x509(user_id, ctx.project_id or "")
            else:
                private, public_key = generate_keypair()
        fp = (x509_fingerprint(public_key) if key_type == "x509"
              else fingerprint(public_key))
        with self.write() as s:
            limits = quotas.project_limits(s, ctx.project_id or "", user_id,
                                           self.unified_limits)
            used = int(s.scalar(select(func.count()).select_from(KeyPair).where(
                KeyPair.user_id == user_id)) or 0)
            if limits["key_pairs"] >= 0 and used + 1 > limits["key_pairs"]:
                raise quotas.OverQuota("Quota exceeded, too many key pairs.")
            if s.get(KeyPair, (user_id, name)) is not None:
                raise Conflict(f"Key pair '{name}' already exists.")
            kp = KeyPair(user_id=user_id, name=name, fingerprint=fp, public_key=public_key,
                         type=key_type, created_at=utcnow())
            s.add(kp)
        out = self._kp(kp)
        if private is not None:
            out["private_key"] = private
        return out

    @staticmethod
    def _kp(kp: KeyPair) -> dict[str, Any]:
        return {"name": kp.name, "user_id": kp.user_id, "fingerprint": kp.fingerprint,
                "public_key": kp.public_key, "type": kp.type, "created_at": kp.created_at}

    def list_keypairs(self, user_id: str, limit: int | None = None,
                      marker: str | None = None) -> list[dict[str, Any]]:
        with self.db.reader() as s:
            q = select(KeyPair).where(KeyPair.user_id == user_id).order_by(KeyPair.name)
            if marker is not None:
                if s.get(KeyPair, (user_id, marker)) is None:
                    raise BadRequest(f"marker [{marker}] not found")
                q = q.where(KeyPair.name > marker)
            if limit is not None:
                q = q.limit(limit)
            return [self._kp(k) for k in s.scalars(q)]

    def get_keypair(self, user_id: str, name: str) -> dict[str, Any]:
        with self.db.reader() as s:
            kp = s.get(KeyPair, (user_id, name))
            if kp is None:
                raise NotFound(f"Keypair {name} not found for user {user_id}")
            return self._kp(kp)

    def delete_keypair(self, user_id: str, name: str) -> None:
        with self.write() as s:
            kp = s.get(KeyPair, (user_id, name))
            if kp is None:
                raise NotFound(f"Keypair {name} not found for user {user_id}")
            s.delete(kp)
