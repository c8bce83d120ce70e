"""Default image policy rules (Glance's secure-RBAC defaults, condensed).

Targets carry ``project_id`` (the image owner) and, for member calls, ``member_id``. Who may
*see* an image (public, community, shared with an accepted/pending membership, own) is
decided in the manager's queries, not here: a hidden image is a 404, never a 403.
"""

from __future__ import annotations

ADMIN = "rule:context_is_admin"
PROJECT_MEMBER = "(role:member and project_id:%(project_id)s)"
PROJECT_READER = "(role:reader and project_id:%(project_id)s)"
ADMIN_OR_MEMBER = f"{ADMIN} or {PROJECT_MEMBER}"
ANY_READER = f"{ADMIN} or role:reader or role:member"
#: Glance lets members (not readers) download what they can see.
ANY_MEMBER = f"{ADMIN} or role:member"

RULES: dict[str, str] = {
    "context_is_admin": "role:admin or is_admin:1",
    "default": ADMIN_OR_MEMBER,
    "add_image": ADMIN_OR_MEMBER,
    "get_image": ANY_READER,
    "get_images": ANY_READER,
    "modify_image": ADMIN_OR_MEMBER,
    "delete_image": ADMIN_OR_MEMBER,
    "publicize_image": ADMIN,
    "communitize_image": ADMIN_OR_MEMBER,
    "set_image_owner": ADMIN,
    "upload_image": ADMIN_OR_MEMBER,
    "download_image": ANY_MEMBER,
    "deactivate": ADMIN_OR_MEMBER,
    "reactivate": ADMIN_OR_MEMBER,
    "add_member": ADMIN_OR_MEMBER,
    "delete_member": ADMIN_OR_MEMBER,
    "get_member": ANY_READER,
    "get_members": ANY_READER,
    "modify_member": f"{ADMIN} or (role:member and project_id:%(member_id)s)",
    "add_image_tag": ADMIN_OR_MEMBER,
    "delete_image_tag": ADMIN_OR_MEMBER,
    "stage_image": ADMIN_OR_MEMBER,
    "import_image": ADMIN_OR_MEMBER,
    # The tasks API is admin-only (Glance's tasks_api_access).
    "get_task": ADMIN,
    "get_tasks": ADMIN,
    "add_task": ADMIN,
    "get_image_tasks": ANY_READER,
    "delete_image_location": ADMIN,
    "add_image_location": f"{ADMIN_OR_MEMBER} or role:service",
    "fetch_image_location": f"{ADMIN} or role:service",
    # Metadata-definition catalog: targets carry the namespace owner as ``project_id``;
    # who may *read* a namespace (public, or own) is decided in the manager (404 otherwise).
    "get_metadef_namespace": ANY_READER,
    "get_metadef_namespaces": ANY_READER,
    "add_metadef_namespace": ADMIN_OR_MEMBER,
    "modify_metadef_namespace": ADMIN_OR_MEMBER,
    "delete_metadef_namespace": ADMIN_OR_MEMBER,
    "get_metadef_object": ANY_READER,
    "get_metadef_objects": ANY_READER,
    "add_metadef_object": ADMIN_OR_MEMBER,
    "modify_metadef_object": ADMIN_OR_MEMBER,
    "delete_metadef_object": ADMIN_OR_MEMBER,
    "get_metadef_property": ANY_READER,
    "get_metadef_properties": ANY_READER,
    "add_metadef_property": ADMIN_OR_MEMBER,
    "modify_metadef_property": ADMIN_OR_MEMBER,
    "remove_metadef_property": ADMIN_OR_MEMBER,
    "get_metadef_tag": ANY_READER,
    "get_metadef_tags": ANY_READER,
    "add_metadef_tag": ADMIN_OR_MEMBER,
    "add_metadef_tags": ADMIN_OR_MEMBER,
    "modify_metadef_tag": ADMIN_OR_MEMBER,
    "delete_metadef_tag": ADMIN_OR_MEMBER,
    "delete_metadef_tags": ADMIN_OR_MEMBER,
    "list_metadef_resource_types": ANY_READER,
    "get_metadef_resource_type": ANY_READER,
    "add_metadef_resource_type_association": ADMIN_OR_MEMBER,
    "remove_metadef_resource_type_association": ADMIN_OR_MEMBER,
    # Image cache (admin only, as in Glance).
    "cache_list": ADMIN,
    "cache_image": ADMIN,
    "cache_delete": ADMIN,
}
