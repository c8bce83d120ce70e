"""Shared API machinery: app factory, middleware, policy engine, version documents."""
