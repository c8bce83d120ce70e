"""Compute service (OpenStack Nova v2.1 with microversions)."""
