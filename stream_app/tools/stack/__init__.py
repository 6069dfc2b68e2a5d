"""Local real-services stack without Docker: a KRaft Kafka broker and a Redis server.

Used by ``stream-app stack up``, by the demo and by the test fixtures
(tests/conftest.py). Everything runs as plain child processes on loopback
ports, with configs, data and logs in one work directory.

* Kafka: Apache Kafka's jars come from Maven Central (no Debian/PyPI package
  ships the broker), cached in ``${STREAM_APP_CACHE:-~/.cache/stream_app}``,
  never inside the repository; the broker runs in KRaft combined mode.
* Redis: Debian's ``redis-server`` (installed with apt-get when missing and we
  are root).

One concern per module:

=================  ==============================================================
``errors``         StackError and the log lines that explain a failed start
``install``        Debian packages (apt-get) and Kafka jars (Maven) into the cache
``service``        a child process with a log, a readiness probe, stop/kill/restart
``kafka_admin``    aiokafka's admin client behind synchronous calls
``kafka_broker``   KafkaBroker and its server.properties (SASL/TLS listeners)
``kafka_cluster``  KafkaCluster: 3 KRaft nodes, replication 3 / min ISR 2, leaders
``redis_server``   RedisServer and its redis.conf (ACL users, TLS)
``redis_cluster``  LocalRedisCluster: masters + replicas, slot owners, failover waits
``tls``            a throwaway CA and server certificate
``local``          LocalStack: both services in one work dir
``cli``            ``stream-app stack up|ensure``
=================  ==============================================================
"""

from .cli import main_stack
from .errors import StackError, log_excerpt, tail
from .install import KAFKA_VERSION, LOG4J_VERSION, cache_dir, ensure_debian_packages, ensure_kafka_jars, kafka_pom
from .kafka_admin import kafka_metadata
from .kafka_broker import KafkaBroker, kafka_cluster_id, kafka_sasl_properties, kafka_server_properties
from .kafka_cluster import KafkaCluster, kafka_cluster_properties
from .local import LocalStack
from .redis_cluster import LocalRedisCluster, RedisClusterNode, parse_cluster_nodes
from .redis_server import RedisServer, redis_config, redis_security_lines
from .service import Service, die_with_parent, free_ports, pick_port, port_is_free
from .tls import TlsFiles, self_signed_tls

__all__ = [
    "KAFKA_VERSION",
    "LOG4J_VERSION",
    "KafkaBroker",
    "KafkaCluster",
    "LocalRedisCluster",
    "LocalStack",
    "RedisClusterNode",
    "RedisServer",
    "Service",
    "StackError",
    "TlsFiles",
    "cache_dir",
    "die_with_parent",
    "ensure_debian_packages",
    "ensure_kafka_jars",
    "free_ports",
    "kafka_cluster_id",
    "kafka_cluster_properties",
    "kafka_metadata",
    "kafka_pom",
    "kafka_sasl_properties",
    "kafka_server_properties",
    "log_excerpt",
    "main_stack",
    "parse_cluster_nodes",
    "pick_port",
    "port_is_free",
    "redis_config",
    "redis_security_lines",
    "self_signed_tls",
    "tail",
]
