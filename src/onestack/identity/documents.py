"""Keystone's smaller resources, stored as typed documents: policies (``/v3/policies``),
OAuth1 consumers, endpoint groups (OS-EP-FILTER), per-domain configuration and EC2
credentials. Validation rules per kind live here; storage is the ``identity_document`` table
(and the credentials table for EC2, as Keystone does).
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from typing import Any

from sqlalchemy import delete, select

from onestack.common.errors import BadRequest, Forbidden, NotFound
from onestack.common.ids import new_id
from onestack.db.identity import Document
from onestack.identity import passwords
from onestack.identity.manager import IdentityManager

#: Domain configuration: the groups and options Keystone accepts, with their defaults.
DOMAIN_CONFIG_DEFAULTS: dict[str, dict[str, Any]] = {
    "identity": {"driver": "sql", "list_limit": None},
    "ldap": {
        "url": "ldap://localhost", "user": None, "suffix": "cn=example,cn=com",
        "query_scope": "one", "page_size": 0, "alias_dereferencing": "default",
        "debug_level": None, "chase_referrals": None, "user_tree_dn": None,
        "user_filter": None, "user_objectclass": "inetOrgPerson", "user_id_attribute": "cn",
        "user_name_attribute": "sn", "user_description_attribute": "description",
        "user_mail_attribute": "mail", "user_enabled_attribute": "enabled",
        "user_enabled_invert": False, "user_enabled_mask": 0, "user_enabled_default": "True",
        "user_attribute_ignore": ["default_project_id"],
        "user_default_project_id_attribute": None, "user_enabled_emulation": False,
        "user_enabled_emulation_dn": None, "user_enabled_emulation_use_group_config": False,
        "user_additional_attribute_mapping": [], "group_tree_dn": None,
        "group_filter": None, "group_objectclass": "groupOfNames",
        "group_id_attribute": "cn", "group_name_attribute": "ou",
        "group_member_attribute": "member", "group_members_are_ids": False,
        "group_desc_attribute": "description", "group_attribute_ignore": [],
        "group_additional_attribute_mapping": [], "group_ad_nesting": False,
        "use_tls": False, "tls_cacertfile": None, "tls_cacertdir": None, "tls_req_cert": "demand",
        "connection_timeout": -1, "use_pool": True, "pool_size": 10, "pool_retry_max": 3,
        "pool_retry_delay": 0.1, "pool_connection_timeout": -1,
        "pool_connection_lifetime": 600, "use_auth_pool": True, "auth_pool_size": 100,
        "auth_pool_connection_lifetime": 60, "randomize_urls": False,
    },
}
SENSITIVE_OPTIONS = {("ldap", "password")}


class DocumentStore:
    """CRUD on typed identity documents (blocking; run in a thread)."""

    def __init__(self, manager: IdentityManager) -> None:
        self.m = manager

    # ------------------------------------------------------------------ generic
    def _get(self, kind: str, doc_id: str, what: str) -> Document:
        with self.m.db.reader() as s:
            d = s.get(Document, (kind, doc_id))
        if d is None:
            raise NotFound(f"Could not find {what}: {doc_id}.")
        return d

    def _list(self, kind: str, parent_id: str | None = None) -> list[Document]:
        with self.m.db.reader() as s:
            q = select(Document).where(Document.kind == kind)
            if parent_id is not None:
                q = q.where(Document.parent_id == parent_id)
            return list(s.scalars(q.order_by(Document.id)))

    def _put(self, kind: str, doc_id: str, data: dict[str, Any],
             parent_id: str | None = None) -> Document:
        with self.m.write() as s:
            d = s.get(Document, (kind, doc_id))
            if d is None:
                d = Document(kind=kind, id=doc_id, parent_id=parent_id, data=data)
                s.add(d)
            else:
                d.data = data
        return d

    def _delete(self, kind: str, doc_id: str, what: str) -> None:
        with self.m.write() as s:
            d = s.get(Document, (kind, doc_id))
            if d is None:
                raise NotFound(f"Could not find {what}: {doc_id}.")
            s.delete(d)

    # ------------------------------------------------------------------ policies
    def create_policy(self, blob: str, type: str, extra: dict[str, Any]) -> Document:
        return self._put("policy", new_id(), {**extra, "blob": blob, "type": type})

    def get_policy(self, policy_id: str) -> Document:
        return self._get("policy", policy_id, "policy")

    def list_policies(self, type: str | None = None) -> list[Document]:
        docs = self._list("policy")
        return [d for d in docs if type is None or d.data.get("type") == type]

    def update_policy(self, policy_id: str, changes: dict[str, Any]) -> Document:
        d = self.get_policy(policy_id)
        return self._put("policy", policy_id, {**d.data, **changes})

    def delete_policy(self, policy_id: str) -> None:
        self._delete("policy", policy_id, "policy")

    # ------------------------------------------------------------------ oauth1 consumers
    def create_consumer(self, description: str | None, extra: dict[str, Any]
                        ) -> tuple[Document, str]:
        secret = secrets.token_urlsafe(24)
        data = {**extra, "description": description,
                "secret_hash": passwords.hash_password(secret, self.m.settings.bcrypt_rounds)}
        return self._put("oauth1_consumer", new_id(), data), secret

    def get_consumer(self, consumer_id: str) -> Document:
        return self._get("oauth1_consumer", consumer_id, "consumer")

    def list_consumers(self) -> list[Document]:
        return self._list("oauth1_consumer")

    def update_consumer(self, consumer_id: str, changes: dict[str, Any]) -> Document:
        if "secret" in changes:
            raise BadRequest("Cannot change consumer secret.")
        d = self.get_consumer(consumer_id)
        return self._put("oauth1_consumer", consumer_id, {**d.data, **changes})

    def delete_consumer(self, consumer_id: str) -> None:
        self._delete("oauth1_consumer", consumer_id, "consumer")

    # ------------------------------------------------------------------ endpoint groups
    def create_endpoint_group(self, name: str, filters: dict[str, Any],
                              description: str | None) -> Document:
        return self._put("endpoint_group", new_id(),
                         {"name": name, "filters": filters, "description": description})

    def get_endpoint_group(self, group_id: str) -> Document:
        return self._get("endpoint_group", group_id, "endpoint group")

    def list_endpoint_groups(self, name: str | None = None) -> list[Document]:
        return [d for d in self._list("endpoint_group")
                if name is None or d.data.get("name") == name]

    def update_endpoint_group(self, group_id: str, changes: dict[str, Any]) -> Document:
        d = self.get_endpoint_group(group_id)
        return self._put("endpoint_group", group_id, {**d.data, **changes})

    def delete_endpoint_group(self, group_id: str) -> None:
        self._delete("endpoint_group", group_id, "endpoint group")
        with self.m.write() as s:
            s.execute(delete(Document).where(Document.kind == "endpoint_group_project",
                                             Document.parent_id == group_id))

    def endpoints_in_group(self, group_id: str) -> list[Any]:
        filters = self.get_endpoint_group(group_id).data.get("filters", {})
        return [e for e in self.m.list_endpoints()
                if all(getattr(e, k, None) == v for k, v in filters.items())]

    # ------------------------------------------------------------------ domain config
    @staticmethod
    def check_config(config: Any, partial_group: str | None = None) -> dict[str, Any]:
        if not isinstance(config, dict) or not config:
            raise BadRequest("Invalid domain config: expecting a non-empty object.")
        groups = {partial_group: config} if partial_group else config
        for group, options in groups.items():
            if group not in DOMAIN_CONFIG_DEFAULTS:
                raise Forbidden(f"Group {group} is not supported for domain specific "
                                "configurations.")
            if not isinstance(options, dict) or not options:
                raise BadRequest(f"Invalid domain config: group {group} must be a non-empty "
                                 "object.")
            for option in options:
                if (option not in DOMAIN_CONFIG_DEFAULTS[group]
                        and (group, option) not in SENSITIVE_OPTIONS):
                    raise Forbidden(f"Option {option} in group {group} is not supported for "
                                    "domain specific configurations.")
        return groups

    def get_domain_config(self, domain_id: str) -> dict[str, Any]:
        self.m.get_domain(domain_id)
        docs = self._list("domain_config", domain_id)
        if not docs:
            raise NotFound(f"Could not find domain config for domain {domain_id}.")
        return _public(docs[0].data)

    def _stored(self, domain_id: str) -> dict[str, Any] | None:
        docs = self._list("domain_config", domain_id)
        return copy.deepcopy(docs[0].data) if docs else None

    def create_domain_config(self, domain_id: str, config: dict[str, Any]
                             ) -> tuple[dict[str, Any], bool]:
        self.m.get_domain(domain_id)
        self.check_config(config)
        created = self._stored(domain_id) is None
        self._put("domain_config", domain_id, config, parent_id=domain_id)
        return _public(config), created

    def update_domain_config(self, domain_id: str, config: Any, group: str | None = None,
                             option: str | None = None) -> dict[str, Any]:
        self.m.get_domain(domain_id)
        stored = self._stored(domain_id)
        if stored is None:
            raise NotFound(f"Could not find domain config for domain {domain_id}.")
        if option is not None:
            assert group is not None
            if not isinstance(config, dict) or option not in config or len(config) != 1:
                raise BadRequest(f"Invalid domain config: expecting only option {option}.")
            self.check_config({group: config})
            if option not in stored.get(group, {}):
                raise NotFound(f"Could not find option {option} in group {group}.")
            stored[group][option] = config[option]
        elif group is not None:
            self.check_config({group: config} if not (
                isinstance(config, dict) and group in config) else config)
            options = config.get(group, config)
            if group not in stored:
                raise NotFound(f"Could not find group {group} in domain config.")
            stored[group].update(options)
        else:
            self.check_config(config)
            for g, opts in config.items():
                stored.setdefault(g, {}).update(opts)
        self._put("domain_config", domain_id, stored, parent_id=domain_id)
        return _public(stored)

    def delete_domain_config(self, domain_id: str, group: str | None = None,
                             option: str | None = None) -> None:
        self.m.get_domain(domain_id)
        stored = self._stored(domain_id)
        if stored is None:
            raise NotFound(f"Could not find domain config for domain {domain_id}.")
        if group is None:
            self._delete("domain_config", domain_id, "domain config")
            return
        if group not in stored or (option is not None and option not in stored[group]):
            raise NotFound(f"Could not find domain config option {group}.{option}.")
        if option is None:
            del stored[group]
        else:
            del stored[group][option]
            if not stored[group]:
                del stored[group]
        if stored:
            self._put("domain_config", domain_id, stored, parent_id=domain_id)
        else:
            self._delete("domain_config", domain_id, "domain config")

    # ------------------------------------------------------------------ EC2 credentials
    def create_ec2(self, user_id: str, project_id: str) -> dict[str, Any]:
        self.m.get_project(project_id)
        access, secret = secrets.token_hex(16), secrets.token_hex(16)
        blob = json.dumps({"access": access, "secret": secret, "trust_id": None})
        cid = hashlib.sha256(access.encode()).hexdigest()
        self.m.create_credential(user_id, "ec2", blob, project_id, cid)
        return {"user_id": user_id, "tenant_id": project_id, "access": access,
                "secret": secret, "trust_id": None}

    def list_ec2(self, user_id: str) -> list[dict[str, Any]]:
        self.m.get_user(user_id)
        out = []
        for c in self.m.list_credentials(user_id, "ec2"):
            blob = json.loads(self.m.credential_blob(c))
            out.append({"user_id": c.user_id, "tenant_id": c.project_id,
                        "access": blob.get("access"), "secret": blob.get("secret"),
                        "trust_id": blob.get("trust_id")})
        return out

    def get_ec2(self, user_id: str, access: str) -> dict[str, Any]:
        for item in self.list_ec2(user_id):
            if item["access"] == access:
                return item
        raise NotFound(f"Could not find credential: {access}.")

    def delete_ec2(self, user_id: str, access: str) -> None:
        self.get_ec2(user_id, access)
        self.m.delete_credential(hashlib.sha256(access.encode()).hexdigest())


def _public(config: dict[str, Any]) -> dict[str, Any]:
    return {g: {o: v for o, v in opts.items() if (g, o) not in SENSITIVE_OPTIONS}
            for g, opts in config.items()}
