"""Command line: ``stream-app stack up|ensure`` (also ``python -m stream_app.stack``)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import StackError, log_excerpt
from .install import KAFKA_VERSION, ensure_debian_packages, ensure_kafka_jars
from .local import LocalStack


def _settings_ports() -> tuple[int, int, object | None]:
    """Kafka and Redis ports from the app's settings, so `stack up` + worker in one shell agree."""
    kafka_port, redis_port, settings = 9092, 6379, None
    try:
        from urllib.parse import urlparse

        from stream_app.config import get_settings

        settings = get_settings()
        first = settings.kafka_bootstrap.split(",")[0].strip()
        kafka_port = int(first.rpartition(":")[2] or 9092)
        redis_port = urlparse(settings.redis_url).port or 6379
    except Exception:  # settings unavailable/unparsable: fall back to the conventional ports
        pass
    return kafka_port, redis_port, settings


def _cmd_ensure(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    if args.packages:
        ensure_debian_packages(args.packages, quiet=args.quiet)
    libs = ensure_kafka_jars(args.kafka_version, quiet=args.quiet)
    if not args.quiet:
        print(f"Kafka {args.kafka_version} jars: {libs} ({time.monotonic() - t0:.1f}s)")
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    kafka_port, redis_port, settings = _settings_ports()
    if args.random_ports:
        kafka_port = redis_port = 0
    kafka_port = kafka_port if args.kafka_port is None else args.kafka_port
    redis_port = redis_port if args.redis_port is None else args.redis_port
    controller_port = args.controller_port or (kafka_port + 1 if kafka_port else 0)
    stack = LocalStack(
        args.workdir,
        kafka_port=kafka_port,
        controller_port=controller_port,
        redis_port=redis_port,
        kafka_nodes=args.kafka_nodes,
        redis_cluster=args.redis_cluster,
    )
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        t0 = time.monotonic()
        try:
            stack.start()
        except StackError as exc:
            print(f"stack failed to start: {exc}", file=sys.stderr)
            if kafka_port or redis_port:
                print("(ports taken? try --random-ports or --kafka-port/--redis-port)", file=sys.stderr)
            return 1
        topics: list[str] = []
        if not args.no_topics and settings is not None:
            topics = [*settings.input_topics().values(), settings.topic_deadletter]
            stack.create_topics(topics, partitions=settings.topic_partitions)
        print(f"stream-app stack is up in {time.monotonic() - t0:.1f}s (work dir {stack.workdir})")
        for node in _nodes(stack.kafka):
            print(f"  Kafka {stack.kafka.version}  {node.bootstrap}   log {node.log_path}")
        for node in _nodes(stack.redis):
            print(f"  Redis         {node.redis_url}   log {node.log_path}")
        if topics:
            print(f"  topics ({settings.topic_partitions} partitions): {', '.join(topics)}")
        for k, v in stack.env().items():
            print(f"export {k}={v}")
        print("Ctrl-C stops the stack.", flush=True)
        while not stopping.wait(1.0):
            for svc in [*_nodes(stack.kafka), *_nodes(stack.redis)]:
                if not svc.running:
                    print(f"{svc.name} exited unexpectedly; {log_excerpt(svc.log_path)}", file=sys.stderr)
                    return 1
        print("stopping...", flush=True)
        return 0
    finally:
        stack.close() if args.workdir is None else stack.stop()
        for s, h in old.items():
            signal.signal(s, h)


def _nodes(service) -> list:
    """The processes of a service: itself, or a cluster's nodes."""
    return list(getattr(service, "nodes", [service]))


def main_stack(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``stream-app stack`` (``up``, ``ensure``); returns the exit code."""
    parser = argparse.ArgumentParser(prog="stream-app stack", description="Local Kafka + Redis without Docker.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start Kafka and Redis in the foreground until Ctrl-C")
    up.add_argument("--workdir", type=Path, help="keep configs, data and logs here (default: a temp dir removed on exit)")
    up.add_argument("--kafka-port", type=int, help="default: port of STREAM_APP_KAFKA_BOOTSTRAP (9092); 0 = any free port")
    up.add_argument("--controller-port", type=int, default=0, help="KRaft controller port (default: Kafka port + 1)")
    up.add_argument("--redis-port", type=int, help="default: port of STREAM_APP_REDIS_URL (6379); 0 = any free port")
    up.add_argument("--random-ports", action="store_true", help="pick free ports for everything")
    up.add_argument("--no-topics", action="store_true", help="do not create the app's topics from settings")
    up.add_argument("--kafka-nodes", type=int, default=1, metavar="N",
                    help="N > 1: a replicated Kafka of N KRaft nodes on free ports (replication 3, min ISR 2)")
    up.add_argument("--redis-cluster", action="store_true",
                    help="a Redis Cluster (3 masters + 3 replicas on free ports) instead of one Redis")
    up.set_defaults(func=_cmd_up)

    ens = sub.add_parser("ensure", help="install what the stack needs (Kafka jars, Debian packages)")
    ens.add_argument("--kafka-version", default=KAFKA_VERSION)
    ens.add_argument("--packages", nargs="*", default=["redis-server"], metavar="DEB", help="Debian packages to install when missing (default: redis-server)")
    ens.add_argument("-q", "--quiet", action="store_true")
    ens.set_defaults(func=_cmd_ensure)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

