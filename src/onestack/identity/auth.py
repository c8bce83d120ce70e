"""Authentication and tokens: password, token and application-credential methods, scoping,
validation (no database on the hot path), and the token document.

``TokenService`` is also the in-process ``TokenValidator`` every other service's middleware
uses, so one all-in-one process validates a token once per request with a decrypt and a few
dictionary lookups.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from onestack.common.access_rules import AccessRules, compile_rules
from onestack.common.context import RequestContext
from onestack.common.errors import APIError, BadRequest, Forbidden, NotFound, Unauthorized
from onestack.common.timeutils import from_timestamp, isotime, to_timestamp, utcnow
from onestack.config import Settings
from onestack.db.identity import ApplicationCredential, User
from onestack.identity import passwords
from onestack.identity.cache import NO_LOAD, CacheMiss
from onestack.identity.manager import IdentityManager, RoleRef, ScopeInfo, UserInfo
from onestack.identity.tokens import TokenData, TokenError, TokenFormatter, new_audit_id
from onestack.identity.trusts import TrustStore

AUTH_REQUIRED = "The request you have made requires authentication."


@dataclass
class ValidToken:
    """A token that passed every check, with what its document needs."""

    token_id: str
    data: TokenData
    user: UserInfo
    roles: list[RoleRef]
    project: ScopeInfo | None = None
    domain: ScopeInfo | None = None
    app_cred: dict[str, Any] | None = None
    trust: dict[str, Any] | None = None
    #: Rendered token documents (JSON bytes) by ``with_catalog``; a ValidToken is immutable
    #: and memoised per token, so repeated validations reuse them.
    rendered: dict[bool, bytes] = field(default_factory=dict)

    def context(self, request_id: str) -> RequestContext:
        ctx = RequestContext(
            request_id=request_id,
            token=self.token_id,
            user_id=self.user.id,
            user_name=self.user.name,
            user_domain_id=self.user.domain_id,
            user_domain_name=self.user.domain_name,
            roles=[r.name for r in self.roles],
            role_ids=[r.id for r in self.roles],
            audit_ids=list(self.data.audit_ids),
            methods=list(self.data.methods),
            app_cred_id=self.data.app_cred_id,
            expires_at=self.data.expires_at,
            system_scope=self.data.system,
        )
        if self.project is not None:
            ctx.project_id = self.project.id
            ctx.project_name = self.project.name
            ctx.project_domain_id = self.project.domain_id
            ctx.project_domain_name = self.project.domain_name
        if self.domain is not None:
            ctx.domain_id = self.domain.id
            ctx.domain_name = self.domain.name
        if self.app_cred is not None:
            ctx.extra["app_cred_restricted"] = not self.app_cred.get("unrestricted", False)
            ctx.access_rules = self.access_rules
        return ctx

    @property
    def access_rules(self) -> AccessRules | None:
        """The compiled access rules of the token's application credential (None: no rules,
        not limited by them)."""
        if self.app_cred is None:
            return None
        rules: AccessRules | None = self.app_cred.get("rules")
        return rules


class TokenService:
    """Issues and validates tokens."""

    def __init__(self, manager: IdentityManager, formatter: TokenFormatter,
                 settings: Settings) -> None:
        self.manager = manager
        self.formatter = formatter
        self.settings = settings
        self.trusts = TrustStore(manager)
        #: token -> (ValidToken, cache generation, revocation version) of a past success.
        self._memo: dict[str, tuple[ValidToken, int, int]] = {}

    # ------------------------------------------------------------------ validation
    def _fail(self, subject: bool) -> APIError:
        if subject:
            return NotFound("Could not find token.", kind="TokenNotFound")
        return Unauthorized(AUTH_REQUIRED)

    def validate(self, token_id: str, *, subject: bool = False,
                 allow_expired: bool = False) -> ValidToken:
        """Check a token completely. Raises 404 for a subject token, 401 for the caller's.

        Uses only cached data once warm; cold misses read the database (call from a thread,
        or use ``validate_async``). A token validated before is answered from a memo as long
        as no identity data and no revocation changed since, and it has not expired.
        """
        self.manager.poll()  # another process on this host changed identity data?
        generation = self.manager.cache.generation
        rev_version = self.manager.revocations.version
        hit = self._memo.get(token_id)
        if hit is not None and hit[1] == generation and hit[2] == rev_version and (
                hit[0].data.expires_at > time.time()):
            return hit[0]
        try:
            data = self.formatter.parse(token_id)
        except TokenError as exc:
            raise self._fail(subject) from exc
        return self._check(token_id, data, generation, rev_version, subject, allow_expired)

    def _check(self, token_id: str, data: TokenData, generation: int, rev_version: int,
               subject: bool = False, allow_expired: bool = False) -> ValidToken:
        """Every check of ``validate`` on already-decoded token data; memoises success."""
        now = time.time()
        if data.expires_at <= now and not (
            allow_expired and data.expires_at + self.settings.token_allow_expired_window > now
        ):
            raise self._fail(subject)
        user = self.manager.user_info(data.user_id)
        if user is None or not user.enabled or not user.domain_enabled:
            raise self._fail(subject)
        if self.manager.revocations.is_revoked(data, user.domain_id):
            raise self._fail(subject)
        app_cred = None
        trust = None
        restrict = None
        if data.app_cred_id:
            app_cred = self._app_cred_info(data.app_cred_id)
            if app_cred is None:
                raise self._fail(subject)
            restrict = app_cred["role_ids"]
        if data.trust_id:
            trust = self._trust_info(data.trust_id)
            if trust is None:
                raise self._fail(subject)
            for uid in (trust["trustor_user_id"], trust["trustee_user_id"]):
                other = self.manager.user_info(uid)
                if other is None or not other.enabled or not other.domain_enabled:
                    raise self._fail(subject)
            restrict = trust["role_ids"]
        project = domain = None
        roles: list[RoleRef] = []
        if data.project_id:
            project = self.manager.project_info(data.project_id)
            if project is None or not project.enabled:
                raise self._fail(subject)
            role_holder = trust["trustor_user_id"] if trust else user.id
            roles = self.manager.effective_roles(role_holder, project_id=project.id,
                                                 restrict_to=restrict)
        elif data.domain_id:
            domain = self.manager.domain_info(data.domain_id)
            if domain is None or not domain.enabled:
                raise self._fail(subject)
            roles = self.manager.effective_roles(user.id, domain_id=domain.id,
                                                 restrict_to=restrict)
        elif data.system:
            roles = self.manager.effective_roles(user.id, system=True, restrict_to=restrict)
        if data.scope_type and not roles:
            raise self._fail(subject)
        valid = ValidToken(token_id, data, user, roles, project, domain, app_cred)
        valid.trust = trust
        if len(self._memo) >= 4096:  # bounded: a burst of new tokens must not grow memory
            self._memo.clear()
        self._memo[token_id] = (valid, generation, rev_version)
        return valid

    def _app_cred_info(self, app_cred_id: str) -> dict[str, Any] | None:
        def load() -> dict[str, Any] | None:
            try:
                ac = self.manager.get_app_cred(app_cred_id)
            except NotFound:
                return None
            # Compiled once per credential and cached like the rest of it: the cache is
            # dropped on every identity change (deleting the credential included), so
            # validating its tokens stays a decrypt and a few dictionary lookups.
            return {"id": ac.id, "name": ac.name, "unrestricted": ac.unrestricted,
                    "role_ids": list(ac.roles or []), "access_rules": ac.access_rules or [],
                    "rules": compile_rules(ac.access_rules)}

        return self.manager.cache.get(("app-cred", app_cred_id), load)

    def _trust_info(self, trust_id: str) -> dict[str, Any] | None:
        def load() -> dict[str, Any] | None:
            t = self.trusts.usable(trust_id)
            if t is None:
                return None
            with self.manager.db.reader() as s:
                expanded = self.manager.implied_closure(s, t.roles or [])
            return {"id": t.id, "impersonation": t.impersonation,
                    "trustor_user_id": t.trustor_user_id, "trustee_user_id": t.trustee_user_id,
                    "project_id": t.project_id, "role_ids": sorted(expanded),
                    "expires_at": t.expires_at}

        info = self.manager.cache.get(("trust", trust_id), load)
        if info is not None and info["expires_at"] is not None and info["expires_at"] <= utcnow():
            return None
        return info

    async def validate_async(self, token_id: str, *, subject: bool = False,
                             allow_expired: bool = False) -> ValidToken:
        """``validate`` on the event loop when every lookup is cached, else in a thread."""
        return await _run_cached(lambda: self.validate(
            token_id, subject=subject, allow_expired=allow_expired))

    async def context_for(self, token: str, request_id: str) -> RequestContext:
        """TokenValidator protocol for every service's middleware."""
        valid = await self.validate_async(token)
        return valid.context(request_id)

    # ------------------------------------------------------------------ authentication
    async def authenticate_async(self, auth: dict[str, Any],
                                 caller: RequestContext | None = None) -> ValidToken:
        """``authenticate``; token-only requests (rescoping) run inline when cached.

        Password and application-credential checks (bcrypt) always run in a thread.
        """
        identity = auth.get("identity") if isinstance(auth, dict) else None
        methods = identity.get("methods") if isinstance(identity, dict) else None
        scope = auth.get("scope") if isinstance(auth, dict) else None
        if methods == ["token"] and not (isinstance(scope, dict) and "OS-TRUST:trust" in scope):
            return await _run_cached(lambda: self.authenticate(auth, caller))
        return await run_in_threadpool(self.authenticate, auth, caller)

    def authenticate(self, auth: dict[str, Any], caller: RequestContext | None = None
                     ) -> ValidToken:
        """Process a ``POST /v3/auth/tokens`` body and return the new token (blocking)."""
        self.manager.poll()
        identity = auth.get("identity")
        if not isinstance(identity, dict):
            raise BadRequest("Expecting to find identity in auth.")
        methods = identity.get("methods")
        if not isinstance(methods, list) or not methods or not all(
                isinstance(m, str) for m in methods):
            raise BadRequest("Expecting to find methods in identity.")
        for m in methods:
            if m not in ("password", "token", "application_credential"):
                raise Unauthorized(f"Attempted to authenticate with an unsupported method: {m}")
            if not isinstance(identity.get(m), dict):
                raise BadRequest(f"Expecting to find {m} in identity.")
        scope = auth.get("scope")
        now = time.time()
        expires_at = now + self.settings.token_expiration
        audit_ids = [new_audit_id()]
        user_id: str | None = None
        app_cred: ApplicationCredential | None = None
        method_names = list(dict.fromkeys(methods))

        if "token" in methods:
            tok = identity["token"].get("id")
            if not isinstance(tok, str):
                raise BadRequest("Expecting to find id in token.")
            try:
                original = self.validate(tok)
            except APIError as exc:
                raise Unauthorized(AUTH_REQUIRED) from exc
            if original.data.app_cred_id:
                raise Forbidden("Application credential tokens cannot be rescoped.")
            if original.data.trust_id:
                raise Forbidden("Trust-scoped tokens cannot be rescoped.")
            user_id = original.user.id
            expires_at = original.data.expires_at
            audit_ids = [new_audit_id(), original.data.audit_ids[-1]]
            method_names = list(dict.fromkeys([*method_names, *original.data.methods]))
            if scope is None:
                scope = _scope_of(original)
        if "password" in methods:
            uid = self._password_user(identity["password"])
            if user_id is not None and uid != user_id:
                raise Unauthorized(AUTH_REQUIRED)
            user_id = uid
        if "application_credential" in methods:
            app_cred = self._app_cred_auth(identity["application_credential"])
            if user_id is not None and app_cred.user_id != user_id:
                raise Unauthorized(AUTH_REQUIRED)
            user_id = app_cred.user_id
            if app_cred.expires_at is not None:
                expires_at = min(expires_at, to_timestamp(app_cred.expires_at))
            if scope not in (None, "unscoped"):
                wanted = _requested_project(scope)
                if wanted is None or (wanted.get("id") and wanted["id"] != app_cred.project_id):
                    raise Unauthorized(
                        "Application credentials can only be used for their own project.")
            scope = {"project": {"id": app_cred.project_id}}
        assert user_id is not None
        user = self.manager.user_info(user_id)
        if user is None or not user.enabled or not user.domain_enabled:
            raise Unauthorized(AUTH_REQUIRED)

        data = TokenData(user_id=user_id, methods=method_names, expires_at=expires_at,
                         issued_at=now, audit_ids=audit_ids,
                         app_cred_id=app_cred.id if app_cred else None)
        if isinstance(scope, dict) and "OS-TRUST:trust" in scope:
            self._apply_trust(data, user, scope)
        else:
            self._apply_scope(data, user, scope)
        generation = self.manager.cache.generation
        rev_version = self.manager.revocations.version
        token_id = self.formatter.issue(data)
        # The data was just built here: check it without decrypting the token again.
        return self._check(token_id, data, generation, rev_version)

    def _apply_scope(self, data: TokenData, user: UserInfo, scope: Any) -> None:
        if scope is None:
            if user.default_project_id:
                p = self.manager.project_info(user.default_project_id)
                if p is not None and p.enabled and self.manager.effective_roles(
                        user.id, project_id=p.id):
                    data.project_id = p.id
            return
        if scope == "unscoped":
            return
        if not isinstance(scope, dict) or len(scope) != 1:
            raise BadRequest("Expecting exactly one of project, domain or system in scope.")
        (kind, value), = scope.items()
        if not isinstance(value, dict):
            raise BadRequest(f"Invalid scope: {kind}.")
        if kind == "project":
            project = self._lookup_project(value)
            self._check_scope_target(user, "Project", project, project_id=project.id)
            data.project_id = project.id
        elif kind == "domain":
            domain = self._lookup_domain(value)
            self._check_scope_target(user, "Domain", domain, domain_id=domain.id)
            data.domain_id = domain.id
        elif kind == "system":
            if value.get("all") is not True:
                raise BadRequest("Only system scope 'all' is supported.")
            if not self.manager.effective_roles(user.id, system=True):
                raise Unauthorized(f"User {user.id} has no access to the system.")
            data.system = "all"
        else:
            raise BadRequest(f"Invalid scope: {kind}.")

    def _apply_trust(self, data: TokenData, user: UserInfo, scope: dict[str, Any]) -> None:
        if len(scope) != 1 or not isinstance(scope["OS-TRUST:trust"], dict):
            raise BadRequest("Invalid trust scope.")
        trust_id = scope["OS-TRUST:trust"].get("id")
        if not isinstance(trust_id, str):
            raise BadRequest("Expecting to find id in OS-TRUST:trust.")
        if data.app_cred_id:
            raise Forbidden("Application credentials cannot be used with trusts.")
        trust = self.trusts.usable(trust_id)
        if trust is None:
            raise Unauthorized(f"Could not find trust: {trust_id}.")
        if trust.trustee_user_id != user.id:
            raise Forbidden("The user is not the trustee of this trust.")
        self.trusts.consume(trust)
        data.trust_id = trust.id
        data.project_id = trust.project_id
        if trust.impersonation:
            data.user_id = trust.trustor_user_id
        if trust.expires_at is not None:
            data.expires_at = min(data.expires_at, to_timestamp(trust.expires_at))

    def _check_scope_target(self, user: UserInfo, label: str, target: ScopeInfo,
                            **scope: str) -> None:
        """401 unless ``target`` (the ``label`` project or domain) is enabled and ``user``
        holds a role on it (``scope``: its ``project_id=`` or ``domain_id=``)."""
        if not target.enabled:
            raise Unauthorized(f"{label} {target.id} is not enabled.")
        if not self.manager.effective_roles(user.id, **scope):
            raise Unauthorized(f"User {user.id} has no access to {label.lower()} {target.id}.")

    @staticmethod
    def _scope_by_id(kind: str, sid: object,
                     info: Callable[[str], ScopeInfo | None]) -> ScopeInfo:
        """The ``kind`` (project or domain) with the id ``sid`` as ``info`` finds it: 400 for
        an id that is not a string, 401 when there is none."""
        if not isinstance(sid, str):
            raise BadRequest(f"Invalid {kind} id.")
        found = info(sid)
        if found is None:
            raise Unauthorized(f"Could not find {kind}: {sid}.")
        return found

    @staticmethod
    def _named_in_domain(ref: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
        """The name and the domain reference of a ``kind`` (project or user) named by name:
        400 without them."""
        name = ref.get("name")
        if not isinstance(name, str):
            raise BadRequest(f"Expecting to find id or name in {kind}.")
        dref = ref.get("domain")
        if not isinstance(dref, dict):
            raise BadRequest(f"Expecting to find domain in {kind}.")
        return name, dref

    def _lookup_domain(self, ref: dict[str, Any]) -> ScopeInfo:
        did = ref.get("id")
        if did is None:
            name = ref.get("name")
            if not isinstance(name, str):
                raise BadRequest("Expecting to find id or name in domain.")
            did = self.manager.domain_id_by_name(name)
            if did is None:
                raise Unauthorized(f"Could not find domain: {name}.")
        return self._scope_by_id("domain", did, self.manager.domain_info)

    def _lookup_project(self, ref: dict[str, Any]) -> ScopeInfo:
        pid = ref.get("id")
        if pid is not None:
            return self._scope_by_id("project", pid, self.manager.project_info)
        name, dref = self._named_in_domain(ref, "project")
        d = self._lookup_domain(dref)
        p = self.manager.project_info_by_name(name, d.id)
        if p is None:
            raise Unauthorized(f"Could not find project: {name}.")
        return p

    def _password_user(self, body: dict[str, Any]) -> str:
        uref = body.get("user")
        if not isinstance(uref, dict):
            raise BadRequest("Expecting to find user in password.")
        password = uref.get("password")
        if not isinstance(password, str):
            raise BadRequest("Expecting to find password in user.")
        user: User | None
        if uref.get("id") is not None:
            if not isinstance(uref["id"], str):
                raise BadRequest("Invalid user id.")
            try:
                user = self.manager.get_user(uref["id"])
            except NotFound:
                user = None
        else:
            name, dref = self._named_in_domain(uref, "user")
            try:
                domain = self._lookup_domain(dref)
            except Unauthorized:
                domain = None
            user = self.manager.find_user(name, domain.id) if domain else None
        self._check_lockout(user)
        if user is None or not passwords.check_password(password, user.password_hash):
            if user is not None and self.settings.lockout_failure_attempts:
                self.manager.record_auth_failure(user.id)
            raise Unauthorized(AUTH_REQUIRED)
        if user.password_expires_at is not None and user.password_expires_at <= utcnow():
            raise Unauthorized(
                f"The password is expired and needs to be changed for user: {user.id}.")
        if not user.enabled:
            raise Unauthorized(AUTH_REQUIRED)
        self.manager.record_auth_success(user)
        return user.id

    def _check_lockout(self, user: User | None) -> None:
        attempts = self.settings.lockout_failure_attempts
        if not attempts or user is None:
            return
        if (user.options or {}).get("ignore_lockout_failure_attempts"):
            return
        if user.failed_auth_count >= attempts and user.last_failed_auth_at is not None:
            duration = dt.timedelta(seconds=self.settings.lockout_duration)
            unlock = user.last_failed_auth_at + duration
            if utcnow() < unlock:
                raise Unauthorized(f"The account is locked for user: {user.id}.")

    def _app_cred_auth(self, body: dict[str, Any]) -> ApplicationCredential:
        secret = body.get("secret")
        if not isinstance(secret, str):
            raise BadRequest("Expecting to find secret in application_credential.")
        ac: ApplicationCredential | None = None
        if body.get("id") is not None:
            try:
                ac = self.manager.get_app_cred(str(body["id"]))
            except NotFound:
                ac = None
        else:
            name = body.get("name")
            uref = body.get("user")
            if not isinstance(name, str) or not isinstance(uref, dict):
                raise BadRequest("Expecting to find id, or name and user, in "
                                 "application_credential.")
            uid = uref.get("id")
            if uid is None and isinstance(uref.get("name"), str) and isinstance(
                    uref.get("domain"), dict):
                try:
                    domain = self._lookup_domain(uref["domain"])
                    u = self.manager.find_user(uref["name"], domain.id)
                    uid = u.id if u else None
                except Unauthorized:
                    uid = None
            if isinstance(uid, str):
                ac = self.manager.find_app_cred(uid, name)
        if ac is None or not passwords.check_password(secret, ac.secret_hash):
            raise Unauthorized(AUTH_REQUIRED)
        if ac.expires_at is not None and ac.expires_at <= utcnow():
            raise Unauthorized("The application credential has expired.")
        return ac

    def revoke_token(self, valid: ValidToken) -> None:
        self.manager.revoke(audit_id=valid.data.audit_ids[0])

    # ------------------------------------------------------------------ documents
    def document(self, valid: ValidToken, with_catalog: bool = True) -> dict[str, Any]:
        """The ``{"token": …}`` body for a validated token."""
        data = valid.data
        user = valid.user
        token: dict[str, Any] = {
            "methods": list(data.methods),
            "user": {
                "domain": {"id": user.domain_id, "name": user.domain_name},
                "id": user.id,
                "name": user.name,
                "password_expires_at": isotime(user.password_expires_at, subsecond=True),
            },
            "audit_ids": list(data.audit_ids),
            "expires_at": isotime(from_timestamp(data.expires_at), subsecond=True),
            "issued_at": isotime(from_timestamp(data.issued_at), subsecond=True),
        }
        if valid.project is not None:
            p = valid.project
            token["project"] = {"domain": {"id": p.domain_id, "name": p.domain_name},
                                "id": p.id, "name": p.name}
            token["is_domain"] = False
        elif valid.domain is not None:
            token["domain"] = {"id": valid.domain.id, "name": valid.domain.name}
        elif data.system:
            token["system"] = {"all": True}
        if data.scope_type:
            token["roles"] = [{"id": r.id, "name": r.name} for r in valid.roles]
            if with_catalog:
                token["catalog"] = self.scoped_catalog(valid)
        if valid.trust is not None:
            t = valid.trust
            token["OS-TRUST:trust"] = {
                "id": t["id"], "impersonation": t["impersonation"],
                "trustee_user": {"id": t["trustee_user_id"]},
                "trustor_user": {"id": t["trustor_user_id"]}}
        if valid.app_cred is not None:
            token["application_credential"] = {
                "id": valid.app_cred["id"], "name": valid.app_cred["name"],
                "restricted": not valid.app_cred["unrestricted"]}
            if valid.access_rules is not None:
                token["application_credential"]["access_rules"] = valid.access_rules.as_list()
        return {"token": token}

    def document_bytes(self, valid: ValidToken, with_catalog: bool = True) -> bytes:
        """``document`` serialised, cached on the (memoised) ValidToken."""
        cached = valid.rendered.get(with_catalog)
        if cached is None:
            cached = orjson.dumps(self.document(valid, with_catalog))
            valid.rendered[with_catalog] = cached
        return cached

    def scoped_catalog(self, valid: ValidToken) -> list[dict[str, Any]]:
        catalog = self.manager.catalog()
        pid = valid.project.id if valid.project else None
        templated = self.manager.cache.get(("catalog-templated",), lambda: any(
            "$(" in e["url"] or "%(" in e["url"] for svc in catalog for e in svc["endpoints"]))
        if not templated:
            return catalog
        out = []
        for svc in catalog:
            eps = []
            for e in svc["endpoints"]:
                url = _substitute(e["url"], pid)
                if url is not None:
                    eps.append({**e, "url": url})
            out.append({**svc, "endpoints": eps})
        return out


def _substitute(url: str, project_id: str | None) -> str | None:
    for key in ("$(project_id)s", "%(project_id)s", "$(tenant_id)s", "%(tenant_id)s"):
        if key in url:
            if project_id is None:
                return None
            url = url.replace(key, project_id)
    return url


def _scope_of(valid: ValidToken) -> Any:
    if valid.project is not None:
        return {"project": {"id": valid.project.id}}
    if valid.domain is not None:
        return {"domain": {"id": valid.domain.id}}
    if valid.data.system:
        return {"system": {"all": True}}
    return "unscoped"


def _requested_project(scope: Any) -> dict[str, Any] | None:
    if isinstance(scope, dict) and isinstance(scope.get("project"), dict):
        return scope["project"]
    return None


async def _run_cached(fn: Any) -> Any:
    """Run ``fn`` inline when everything it needs is cached, else in the thread pool.

    Inline runs set ``NO_LOAD`` so a cache miss raises instead of blocking the event loop on
    the database; the whole (idempotent) computation is then repeated in a worker thread.
    """
    token = NO_LOAD.set(True)
    try:
        return fn()
    except CacheMiss:
        pass
    finally:
        NO_LOAD.reset(token)
    return await run_in_threadpool(fn)
