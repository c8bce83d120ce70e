"""Default block-storage policy rules: Cinder's secure-RBAC defaults (project reader and
member, admin), as data. Who may *see* a volume or snapshot (its own project; an admin all)
is decided in the manager's queries; these rules decide the rest. Operators override any
rule with ``policy_file``."""

from __future__ import annotations

ADMIN = "role:admin"
READER = "(role:admin) or (role:reader and project_id:%(project_id)s)"
MEMBER = "(role:admin) or (role:member and project_id:%(project_id)s)"
ANY_READER = "(role:admin) or role:reader"

RULES: dict[str, str] = {
    "admin_api": ADMIN,
    "default": ADMIN,
    # volumes
    "volume:create": MEMBER,
    "volume:get": READER,
    "volume:get_all": READER,
    "volume:update": MEMBER,
    "volume:delete": MEMBER,
    "volume:force_delete": ADMIN,
    "volume:extend": MEMBER,
    "volume:get_volume_metadata": READER,
    "volume:update_volume_metadata": MEMBER,
    "volume:delete_volume_metadata": MEMBER,
    "volume:update_readonly_flag": MEMBER,
    "volume_extension:volume_actions:set_bootable": MEMBER,
    "volume_extension:volume_admin_actions:reset_status": ADMIN,
    "volume_extension:volume_admin_actions:force_detach": ADMIN,
    "volume_extension:volume_image_metadata:show": READER,
    "volume_extension:volume_image_metadata:set": MEMBER,
    "volume_extension:volume_actions:reserve": MEMBER,
    "volume_extension:volume_actions:upload_image": MEMBER,
    "volume_extension:volume_actions:unreserve": MEMBER,
    "volume_extension:volume_actions:attach": MEMBER,
    "volume_extension:volume_actions:begin_detaching": MEMBER,
    "volume_extension:volume_actions:roll_detaching": MEMBER,
    "volume_extension:volume_actions:detach": MEMBER,
    "volume_extension:volume_actions:initialize_connection": MEMBER,
    "volume_extension:volume_actions:terminate_connection": MEMBER,
    "volume_extension:volume_host_attribute": ADMIN,
    "volume_extension:volume_tenant_attribute": READER,
    "volume_extension:volume_mig_status_attribute": ADMIN,
    "volume:get_all_tenants": ADMIN,
    # snapshots
    "volume:create_snapshot": MEMBER,
    "volume:get_snapshot": READER,
    "volume:get_all_snapshots": READER,
    "volume:update_snapshot": MEMBER,
    "volume:delete_snapshot": MEMBER,
    "volume:force_delete_snapshot": ADMIN,
    "volume:get_snapshot_metadata": READER,
    "volume:update_snapshot_metadata": MEMBER,
    "volume:delete_snapshot_metadata": MEMBER,
    "volume_extension:snapshot_admin_actions:reset_status": ADMIN,
    "volume_extension:extended_snapshot_attributes": READER,
    # QoS specs
    "volume_extension:qos_specs_manage:get": ADMIN,
    "volume_extension:qos_specs_manage:get_all": ADMIN,
    "volume_extension:qos_specs_manage:create": ADMIN,
    "volume_extension:qos_specs_manage:update": ADMIN,
    "volume_extension:qos_specs_manage:delete": ADMIN,
    # backups
    "backup:create": MEMBER,
    "backup:get": READER,
    "backup:get_all": READER,
    "backup:update": MEMBER,
    "backup:delete": MEMBER,
    "backup:restore": MEMBER,
    "backup:backup-reset_status": ADMIN,
    "backup:backup-force_delete": ADMIN,
    "backup:export-import": ADMIN,
    # user messages
    "message:get": READER,
    "message:get_all": READER,
    "message:delete": MEMBER,
    # transfers
    "volume:create_transfer": MEMBER,
    "volume:get_transfer": READER,
    "volume:get_all_transfers": READER,
    "volume:delete_transfer": MEMBER,
    "volume:accept_transfer": MEMBER,
    # types
    "volume_extension:types_manage": ADMIN,
    "volume_extension:type_get": ANY_READER,
    "volume_extension:type_get_all": ANY_READER,
    "volume_extension:access_types_extra_specs": ADMIN,
    "volume_extension:volume_type_access": ADMIN,
    "volume_extension:volume_type_access:addProjectAccess": ADMIN,
    "volume_extension:volume_type_access:removeProjectAccess": ADMIN,
    # quotas, limits, zones, services
    "volume_extension:quotas:show": READER,
    "volume_extension:quotas:update": ADMIN,
    "volume_extension:quotas:delete": ADMIN,
    "volume_extension:availability_zone_list": ANY_READER,
    "limits_extension:used_limits": READER,
    "volume_extension:services:index": ADMIN,
    "volume_extension:hosts": ADMIN,
    "volume_extension:services:update": ADMIN,
    "volume_extension:quota_classes": ADMIN,
    "volume_extension:quota_classes:update": ADMIN,
    "volume_extension:retype": MEMBER,
    "snapshot_extension:snapshot_actions:update_snapshot_status": MEMBER,
    "volume_extension:capabilities": ADMIN,
    "scheduler_extension:scheduler_stats:get_pools": ADMIN,
}
