"""The local stack's clusters without starting them: the Redis Cluster's reading of ``CLUSTER
NODES`` (who is master, of which slots, failed), the replicated Kafka's shared properties, and the
settings a stack with both hands to the app. Started for real by the ``redis_cluster`` and
``kafka_cluster`` fixtures (tests/integration/test_redis_cluster.py, tests/faults)."""

from __future__ import annotations

from stream_app.config import Settings
from stream_app.tools.stack import LocalStack, kafka_cluster_properties, parse_cluster_nodes

NODES = """\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003 master,fail - 1426238318243 1426238318243 3 disconnected
6ec2 127.0.0.1:30005@40005 master - 0 1426238316232 7 connected 10923-16383 [93-<-292f]
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 16000
"""


def test_cluster_nodes_are_read_with_roles_slots_and_failures():
    views = {v.port: v for v in parse_cluster_nodes(NODES)}
    assert views[30004].master_id == "e7d1" and not views[30004].is_master
    assert views[30002].slots == ((5461, 10922),) and views[30002].serves(6000)
    assert views[30003].failed and not views[30003].connected and not views[30003].slots
    assert views[30005].slots == ((10923, 16383),)  # a migrating slot is not counted
    assert views[30001].is_master and views[30001].flags == {"master"}
    assert views[30001].serves(16000) and not views[30001].serves(15999)


def test_a_replicated_kafka_replicates_everything_three_times_and_needs_two_in_sync():
    props = kafka_cluster_properties(3, "1@h:1,2@h:2,3@h:3")
    factors = {k: v for k, v in props.items() if k.endswith("replication.factor")}
    assert set(factors.values()) == {3} and len(factors) == 4
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == 2
    assert props["unclean.leader.election.enable"] == "false"
    assert kafka_cluster_properties(2, "")["default.replication.factor"] == 2  # never more than nodes


def test_a_stack_of_clusters_points_the_app_at_both(tmp_path):
    stack = LocalStack(tmp_path, kafka_nodes=3, redis_cluster=True)  # not started
    env = stack.env()
    settings = Settings(**{k.removeprefix("STREAM_APP_").lower(): v for k, v in env.items()})
    assert len(settings.kafka_bootstrap.split(",")) == 3 == len(stack.kafka.nodes)
    assert settings.redis_cluster and len(settings.redis_cluster_nodes.split(",")) == 5
    assert (settings.topic_replication, settings.topic_min_insync_replicas) == (3, 2)
    assert settings.redis_url == stack.redis.nodes[0].redis_url
    plain = LocalStack(tmp_path / "plain").env()
    assert set(plain) == {"STREAM_APP_KAFKA_BOOTSTRAP", "STREAM_APP_REDIS_URL"}
