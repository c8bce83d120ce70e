"""Placement service (OpenStack Placement API 1.x): resource providers, inventories, traits,
aggregates, allocations and allocation candidates."""
