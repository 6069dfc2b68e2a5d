"""The nodes a start tries to reach Redis through: a Redis Cluster's URL node may be the master a
failover is replacing, so the other known nodes count too (same credentials and TLS)."""

from stream_app.config import Settings
from stream_app.store.connection import startup_nodes


def test_one_redis_is_the_urls_node():
    s = Settings(redis_url="redis://10.0.0.5:6380/0", redis_cluster_nodes="10.0.0.6:6380")
    assert startup_nodes(s) == [("10.0.0.5:6380", "redis://10.0.0.5:6380/0")]


def test_cluster_tries_every_known_node_with_the_urls_credentials_and_scheme():
    s = Settings(
        redis_url="rediss://app:secret@10.0.0.5:7000/0",
        redis_cluster=True,
        redis_cluster_nodes="10.0.0.6:7001, 10.0.0.5:7000,10.0.0.7:7002",
    )
    assert startup_nodes(s) == [
        ("10.0.0.5:7000", "rediss://app:secret@10.0.0.5:7000/0"),
        ("10.0.0.6:7001", "rediss://app:secret@10.0.0.6:7001/0"),
        ("10.0.0.7:7002", "rediss://app:secret@10.0.0.7:7002/0"),
    ]
