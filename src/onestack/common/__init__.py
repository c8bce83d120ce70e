"""Pieces shared by every service: request context, ids, time, errors, list helpers."""
