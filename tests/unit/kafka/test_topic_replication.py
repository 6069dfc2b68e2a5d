"""The replication the app asks of the topics it creates, and what it says of existing ones."""

from __future__ import annotations

import pytest

from stream_app.config import Settings
from stream_app.kafka.topics import replication_warnings, topic_configs


def test_min_insync_replicas_is_set_only_when_asked_and_never_above_the_replication():
    assert topic_configs(Settings()) == {}  # the broker's default
    assert topic_configs(Settings(topic_replication=3, topic_min_insync_replicas=2)) == {"min.insync.replicas": "2"}
    with pytest.raises(RuntimeError, match="MIN_INSYNC_REPLICAS=3 exceeds STREAM_APP_TOPIC_REPLICATION=2"):
        topic_configs(Settings(topic_replication=2, topic_min_insync_replicas=3))


def test_existing_topics_replicated_less_than_asked_are_named():
    described = [
        {"topic": "cs.tickets", "partitions": [{"replicas": [1, 2, 3]}, {"replicas": [2, 3, 1]}]},
        {"topic": "cs.deadletter", "partitions": [{"replicas": [1]}, {"replicas": [2, 3, 1]}]},
    ]
    assert replication_warnings(described, Settings(topic_replication=1)) == []
    warnings = replication_warnings(described, Settings(topic_replication=3))
    assert len(warnings) == 1 and warnings[0].startswith("topic 'cs.deadletter' has replication factor 1")
