"""Image service (OpenStack Glance v2 API)."""
