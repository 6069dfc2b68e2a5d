"""What a FaultRun uses of a stack, assembled from pieces of several: the replicated-Kafka and
Redis Cluster scenarios pair a session cluster with the session stack's other service."""

from __future__ import annotations


class Services:
    """``.bootstrap``, ``.redis_url``, ``.create_topics``: a Kafka (broker or cluster) and a Redis
    URL (one server's or a cluster node's)."""

    def __init__(self, kafka, redis_url: str) -> None:
        self.kafka, self.redis_url = kafka, redis_url

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    def create_topics(self, names, **kw):
        return self.kafka.create_topics(names, **kw)
