"""Network service (Neutron v2.0 API, IPAM, security groups, routers, floating IPs)."""
