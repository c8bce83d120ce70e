"""Scheduler: picks a host for each instance (filters, then weighers) and claims it."""
