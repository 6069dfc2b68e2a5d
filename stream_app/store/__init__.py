"""The state store: entity states by partition on the worker (``partition_state``), and where
checkpoints make them durable (``backend``: the interface and the in-memory one;
``redis_store``: Redis, the system of record; ``redis_flush``: its key layout and atomic write).
Layout, consistency argument and recovery: docs/state-store.md.
"""
