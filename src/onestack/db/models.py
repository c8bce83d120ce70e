"""Imports every service's tables so ``Base.metadata`` is complete (for Alembic)."""

from onestack.db import (
    compute,  # noqa: F401
    console,  # noqa: F401
    identity,  # noqa: F401
    image,  # noqa: F401
    network,  # noqa: F401
    placement,  # noqa: F401
    volume,  # noqa: F401
)
