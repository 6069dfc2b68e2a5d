"""Table stores. ``register()`` makes ``store="redis://host:port/db"`` work in ``app.Table``.

The same registration is available declaratively as the entry point
``[project.entry-points."faust.stores"] redis = "stream_app.store.faust_store:RedisStore"``.
"""

from __future__ import annotations

STORE_PATH = "stream_app.store.faust_store:RedisStore"


def register(scheme: str = "redis") -> None:
    """Register the Redis table store under ``scheme`` in faust's store registry (idempotent)."""
    from faust.stores import STORES

    STORES.aliases[scheme] = STORE_PATH


__all__ = ["STORE_PATH", "register"]
