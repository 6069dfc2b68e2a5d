"""A real Redis Cluster on loopback: masters with replicas, each Debian's ``redis-server`` with
``cluster-enabled yes``, joined once by ``redis-cli --cluster create``; who serves which slot, and
waits for a healthy cluster or a replica's promotion (the fault tests kill masters)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import StackError, log_excerpt
from .redis_server import RedisServer
from .service import free_ports

SLOTS = 16384


class RedisClusterNode(RedisServer):
    """One cluster node: a :class:`RedisServer` in cluster mode with an explicit bus port."""

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        port: int,
        bus_port: int,
        node_timeout_ms: int,
        persist: bool = True,
        start_timeout: float = 30.0,
    ) -> None:
        super().__init__(workdir, port=port, persist=persist, start_timeout=start_timeout)
        self.bus_port = bus_port
        self.node_timeout_ms = node_timeout_ms

    def _describe(self) -> str:
        return f"redis-server (cluster node) on 127.0.0.1:{self.port}"

    def _extra_lines(self) -> list[str]:
        return [
            *super()._extra_lines(),
            "cluster-enabled yes",
            # Explicit: the default (port + 10000) may be taken or beyond 65535 for a random port.
            f"cluster-port {self.bus_port}",
            # Relative to the data dir: a restarted node finds its cluster (and its role) again.
            "cluster-config-file nodes.conf",
            # How long a silent node has until it is failed over; 15 s by default.
            f"cluster-node-timeout {self.node_timeout_ms}",
            # Any replica may be promoted, however long it was disconnected (tests kill repeatedly).
            "cluster-replica-validity-factor 0",
            # A replica's full sync starts at once (the default waits 5 s for more replicas).
            "repl-diskless-sync-delay 0",
        ]


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES``: a node as another node sees it."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    connected: bool
    slots: tuple[tuple[int, int], ...] = field(default=())

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool({"fail", "fail?", "noaddr"} & self.flags)

    def serves(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slots)


def parse_cluster_nodes(text: str) -> list[NodeView]:
    """``CLUSTER NODES`` output -> one :class:`NodeView` per line (migrating slots left out)."""
    out = []
    for line in text.strip().splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split("@", 1)[0]
        slots = []
        for item in parts[8:]:
            if item.startswith("["):
                continue
            lo, _, hi = item.partition("-")
            slots.append((int(lo), int(hi or lo)))
        out.append(
            NodeView(
                id=parts[0],
                port=int(address.rpartition(":")[2] or 0),
                flags=frozenset(parts[2].replace("myself,", "").split(",")),
                master_id=None if parts[3] == "-" else parts[3],
                connected=parts[7] == "connected",
                slots=tuple(slots),
            )
        )
    return out


class LocalRedisCluster:
    """``masters`` masters with ``replicas`` replicas each on loopback ports, in one work dir.

    ``.redis_url`` is one node's URL: a cluster client discovers the others from it.
    ``master_for(key)`` is the node serving a key now; kill it (``node.kill()``) and
    ``wait_promoted(node)`` returns when a replica serves its slots; ``node.start()`` brings it
    back (it rejoins as a replica of the promoted one) and ``wait_healthy()`` waits until it is.
    """

    name = "redis-cluster"

    def __init__(
        self,
        workdir: str | os.PathLike | None = None,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 2000,
        persist: bool = True,
        start_timeout: float = 60.0,
    ) -> None:
        if masters < 3:
            raise StackError("a Redis Cluster needs at least 3 masters")
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="stream-app-redis-cluster-")).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.masters_wanted, self.replicas = masters, replicas
        self.start_timeout = start_timeout
        n = masters * (1 + replicas)
        ports = free_ports(2 * n)
        self.nodes = [
            RedisClusterNode(
                self.workdir / f"node-{i}",
                port=ports[i],
                bus_port=ports[n + i],
                node_timeout_ms=node_timeout_ms,
                persist=persist,
            )
            for i in range(n)
        ]
        self.log_path = self.workdir / "cluster-create.log"

    # -- addresses ------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        return self.nodes[0].redis_url

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    def env(self) -> dict[str, str]:
        """Settings environment (``STREAM_APP_*``) pointing the app's store at this cluster."""
        return {
            "STREAM_APP_REDIS_URL": self.redis_url,
            "STREAM_APP_REDIS_CLUSTER": "true",
            "STREAM_APP_REDIS_CLUSTER_NODES": ",".join(self.addresses[1:]),
        }

    @property
    def running(self) -> bool:
        return all(n.running for n in self.nodes)

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> LocalRedisCluster:
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_ready()
            if not self._formed():
                self._create()
            self.wait_healthy(self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalRedisCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _formed(self) -> bool:
        return self._info(self.nodes[0]).get("cluster_slots_assigned", "0") != "0"

    def _create(self) -> None:
        cli = shutil.which("redis-cli") or "redis-cli"
        cmd = [cli, "--cluster", "create", *self.addresses, "--cluster-replicas", str(self.replicas), "--cluster-yes"]
        with open(self.log_path, "ab") as log:
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=60)
        if res.returncode != 0:
            raise StackError(f"redis-cli --cluster create failed (exit {res.returncode}); {log_excerpt(self.log_path)}")

    # -- the cluster's view -----------------------------------------------------------
    def _client(self, node: RedisClusterNode):
        import redis

        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2, socket_connect_timeout=2)

    def _ask(self, node: RedisClusterNode, fn: Callable):
        client = self._client(node)
        try:
            return fn(client)
        finally:
            client.close()

    def _info(self, node: RedisClusterNode) -> dict[str, str]:
        text = self._ask(node, lambda c: c.execute_command("CLUSTER", "INFO")).decode()
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def view(self) -> list[NodeView]:
        """``CLUSTER NODES`` as the first running node that answers sees it."""
        import redis

        for node in self.nodes:
            if node.running:
                try:
                    return parse_cluster_nodes(self._ask(node, lambda c: c.execute_command("CLUSTER", "NODES")).decode())
                except redis.RedisError:
                    continue
        raise StackError("no Redis Cluster node answers")

    def node_at(self, port: int) -> RedisClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def keyslot(self, key: str) -> int:
        return int(self._ask(next(n for n in self.nodes if n.running), lambda c: c.cluster("KEYSLOT", key)))

    def master_for(self, key: str) -> RedisClusterNode:
        """The node serving ``key``'s slot now."""
        slot = self.keyslot(key)
        views = [v for v in self.view() if v.is_master and not v.failed and v.serves(slot)]
        if not views:
            raise StackError(f"no master serves slot {slot} now")
        return self.node_at(views[0].port)

    def replicas_of(self, master: RedisClusterNode) -> list[RedisClusterNode]:
        views = self.view()
        mid = next(v.id for v in views if v.port == master.port)
        return [self.node_at(v.port) for v in views if v.master_id == mid]

    def masters(self) -> list[RedisClusterNode]:
        return [self.node_at(v.port) for v in self.view() if v.is_master and v.slots and not v.failed]

    def flushall(self) -> None:
        for node in self.masters():
            self._ask(node, lambda c: c.flushall())

    # -- waits ----------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """What keeps the cluster from being whole: every node up and agreeing that the cluster is
        ok, every slot served by a live master, each master with its replicas in sync."""
        import redis

        out = [f"node {n.port} not running" for n in self.nodes if not n.running]
        if out:
            return out
        try:
            for node in self.nodes:
                state = self._info(node).get("cluster_state")
                if state != "ok":
                    out.append(f"node {node.port}: cluster_state {state}")
            views = self.view()
            masters = [v for v in views if v.is_master and v.slots]
            covered = sum(hi - lo + 1 for v in masters for lo, hi in v.slots)
            if covered != SLOTS or len(masters) != self.masters_wanted:
                out.append(f"{len(masters)} masters serve {covered} slots")
            out += [f"node {v.port} flagged {','.join(sorted(v.flags))}" for v in views if v.failed or not v.connected]
            for m in masters:
                replicas = [v for v in views if v.master_id == m.id]
                synced = [
                    v for v in replicas
                    if self._ask(self.node_at(v.port), lambda c: c.info("replication")).get("master_link_status") == "up"
                ]  # fmt: skip
                if len(synced) < self.replicas:
                    out.append(f"master {m.port}: {len(synced)} of {self.replicas} replicas in sync")
        except redis.RedisError as exc:
            out.append(f"asking the cluster failed: {exc!r}")
        return out

    def wait_healthy(self, timeout: float = 60.0, tick: Callable[[], object] | None = None) -> float:
        """Block until :meth:`problems` is empty; returns the seconds it took. ``tick`` is called
        between checks (e.g. a test's own observations)."""
        return self._wait(lambda: not self.problems(), timeout, lambda: "; ".join(self.problems()), tick)

    def wait_promoted(
        self, old: RedisClusterNode, timeout: float = 60.0, tick: Callable[[], object] | None = None
    ) -> float:
        """Block until the slots ``old`` served are served by another live master and every
        running node says the cluster is ok; returns the seconds it took."""
        import redis

        old_id = next(v.id for v in self.view() if v.port == old.port)

        def promoted() -> bool:
            try:
                views = self.view()
                if any(v.id == old_id and v.is_master and v.slots and not v.failed for v in views):
                    return False
                masters = [v for v in views if v.is_master and v.slots and not v.failed]
                if sum(hi - lo + 1 for v in masters for lo, hi in v.slots) != SLOTS:
                    return False
                return all(self._info(n).get("cluster_state") == "ok" for n in self.nodes if n.running)
            except (redis.RedisError, StackError):
                return False

        return self._wait(promoted, timeout, lambda: f"slots of node {old.port} not taken over", tick)

    @staticmethod
    def _wait(
        done: Callable[[], bool], timeout: float, why: Callable[[], str], tick: Callable[[], object] | None
    ) -> float:
        t0 = time.monotonic()
        while not done():
            if time.monotonic() - t0 > timeout:
                raise StackError(f"Redis Cluster not ready after {timeout:.0f}s: {why()}")
            if tick is not None:
                tick()
            time.sleep(0.1)
        return time.monotonic() - t0

    # -- replication lag ------------------------------------------------------------------
    def stall_replica(self, master: RedisClusterNode) -> RedisClusterNode:
        """Freeze ``master``'s replica (SIGSTOP) and make the master drop it at its next write
        (a replica output buffer limit of 1 byte): from now on the master acknowledges writes the
        replica never gets, as under a network partition or a replica far behind. Kill the master
        and :meth:`resume` the replica: it is promoted without them (asynchronous replication
        loses acknowledged writes). Returns the replica."""
        replica = self.replicas_of(master)[0]
        self._ask(master, lambda c: c.config_set("client-output-buffer-limit", "replica 1 1 0"))
        os.kill(replica.pid, signal.SIGSTOP)
        return replica

    @staticmethod
    def resume(node: RedisClusterNode) -> None:
        """Undo :meth:`stall_replica`'s freeze (SIGCONT)."""
        if node.running:
            os.kill(node.pid, signal.SIGCONT)
