"""Seeding: a declarative YAML file of the resources a cloud should have, applied
idempotently through the public APIs (``onestack seed FILE``, or ``DATA/seed.yaml`` on every
start), and init hooks (``DATA/init/{boot,ready,shutdown}.d`` scripts). See docs/testing.md.
"""
