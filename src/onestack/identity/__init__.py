"""Identity service (OpenStack Keystone v3)."""
