"""Local real-services stack without Docker: a KRaft Kafka broker and a Redis server.

Used by ``stream-app stack up``, by the demo and by the test fixtures
(tests/conftest.py). Everything runs as plain child processes on loopback
ports, with configs, data and logs in one work directory.

* Kafka: Apache Kafka's jars come from Maven Central (no Debian/PyPI package
  ships the broker), cached in ``${STREAM_APP_CACHE:-~/.cache/stream_app}``,
  never inside the repository; the broker runs in KRaft combined mode.
* Redis: Debian's ``redis-server`` (installed with apt-get when missing and we
  are root).

Readiness checks and topic admin use aiokafka's admin client behind
synchronous methods that work inside or outside a running asyncio loop.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError, for_code

__all__ = [
    "KAFKA_VERSION",
    "KafkaBroker",
    "LocalStack",
    "RedisServer",
    "StackError",
    "TlsFiles",
    "cache_dir",
    "ensure_debian_packages",
    "ensure_kafka_jars",
    "free_ports",
    "main_stack",
    "self_signed_tls",
]

KAFKA_VERSION = "4.1.1"
# The SLF4J binding Kafka's scala code logs through (kafka_2.13 ships none).
LOG4J_VERSION = "2.24.3"

# Debian package -> the binary whose presence means "installed".
_PACKAGE_BINARY = {
    "redis-server": "redis-server",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "amtool",
    "maven": "mvn",
    "openjdk-17-jre-headless": "java",
}

_TAIL_LINES = 40
_T = TypeVar("_T")


class StackError(RuntimeError):
    """A local service could not be fetched, installed, started or queried."""


# --------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------


def cache_dir() -> Path:
    """Cache root for downloaded artefacts (outside the repository)."""
    env = os.environ.get("STREAM_APP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stream_app"


def free_ports(n: int = 1) -> list[int]:
    """``n`` distinct free loopback TCP ports (sockets held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path: Path, lines: int = _TAIL_LINES) -> str:
    """Last ``lines`` lines of a (log) file, or a note that it is missing."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"(no log file at {path})"
    return "\n".join(data.splitlines()[-lines:])


_ERROR_LINE = re.compile(r"\b(ERROR|FATAL)\b|Exception|Address already in use|^\d+:[CM] .* # ")


def log_excerpt(path: Path, lines: int = 25) -> str:
    """What explains a failed start: error lines of the latest run, then its last lines.

    Kafka logs its cause (bad config, port in use) well before the shutdown chatter
    that ends the log, so a plain tail would miss it.
    """
    text = tail(path, 5000)
    run = text.rsplit("\n===== ", 1)[-1].splitlines()
    errors = [ln for ln in run if _ERROR_LINE.search(ln)][:12]
    last = run[-lines:]
    out = f"log {path}"
    if errors:
        out += "\n-- error lines:\n" + "\n".join(errors)
    return out + f"\n-- last {len(last)} lines:\n" + "\n".join(last)


def kafka_cluster_id(seed: uuid.UUID | None = None) -> str:
    """A Kafka cluster id: URL-safe base64 of a UUID without padding (what kafka-storage random-uuid prints)."""
    raw = (seed or uuid.uuid4()).bytes
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def kafka_server_properties(
    *,
    port: int,
    controller_port: int,
    data_dir: Path,
    node_id: int = 1,
    extra: Mapping[str, object] | None = None,
) -> str:
    """server.properties for a single-node KRaft broker+controller on loopback."""
    props: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": f"{node_id}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        # The app creates its topics explicitly; an auto-created topic is a bug to surface.
        "auto.create.topics.enable": "false",
        "num.partitions": 1,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": 1,
        # Fewer internal partitions: the first consumer group comes up faster on 2 cores.
        "offsets.topic.num.partitions": 8,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 4,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        # Consumers join immediately instead of waiting 3 s for peers.
        "group.initial.rebalance.delay.ms": 0,
        # After a hard kill the controller refuses the restarted broker's registration
        # until the old session expires: 4 s instead of 9 s (heartbeats every 1 s).
        "broker.session.timeout.ms": 4000,
        "broker.heartbeat.interval.ms": 1000,
        "num.network.threads": 2,
        "num.io.threads": 4,
        "num.recovery.threads.per.data.dir": 1,
        # Compaction (Faust changelogs) with a small heap: default buffer is 128 MiB.
        "log.cleaner.dedupe.buffer.size": 32 * 1024 * 1024,
        "log.cleaner.threads": 1,
    }
    props.update(extra or {})
    lines = ["# Generated by stream_app.tools.stack; edits are overwritten on start."]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


LOG4J2_PROPERTIES = """\
# Generated by stream_app.tools.stack: broker logs go to stdout, which is the log file.
rootLogger.level=INFO
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
logger.request.name=kafka.request.logger
logger.request.level=WARN
logger.statechange.name=state.change.logger
logger.statechange.level=WARN
logger.cleaner.name=kafka.log.LogCleaner
logger.cleaner.level=WARN
"""


def redis_config(
    *, port: int, data_dir: Path, persist: bool, fsync: str = "everysec", extra_lines: Sequence[str] = ()
) -> str:
    """redis.conf for a loopback-only server; with ``persist`` the AOF keeps data over restarts."""
    lines = [
        "# Generated by stream_app.tools.stack; edits are overwritten on start.",
        f"port {port}",
        "bind 127.0.0.1",
        "daemonize no",
        'logfile ""',
        f'dir "{data_dir}"',
        'save ""',
        f"appendonly {'yes' if persist else 'no'}",
        f"appendfsync {fsync}",
        "stop-writes-on-bgsave-error no",
        "databases 16",
    ]
    return "\n".join([*lines, *extra_lines]) + "\n"


def redis_security_lines(users: Mapping[str, str] | None, tls: TlsFiles | None, tls_port: int | None) -> list[str]:
    """redis.conf lines: ACL users (default user off) and a TLS port (server auth only)."""
    lines: list[str] = []
    if users:
        lines.append("user default off")
        lines += [f"user {name} on >{password} ~* &* +@all" for name, password in users.items()]
    if tls is not None and tls_port:
        lines += [
            f"tls-port {tls_port}",
            f'tls-cert-file "{tls.cert}"',
            f'tls-key-file "{tls.key}"',
            f'tls-ca-cert-file "{tls.ca}"',
            "tls-auth-clients no",
        ]
    return lines


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate it signed (PEM files)."""

    ca: Path  # CA certificate: what clients trust
    cert: Path  # server certificate (SAN 127.0.0.1, localhost)
    key: Path  # server private key, PKCS#8, unencrypted
    bundle: Path  # key + certificate in one file (Kafka's PEM keystore)


def self_signed_tls(directory: Path, *, days: int = 3) -> TlsFiles:
    """Create a test CA and a loopback server certificate with the ``openssl`` CLI (idempotent)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key", directory / "server-bundle.pem")
    if files.bundle.exists():
        return files
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StackError("no `openssl` on PATH: apt-get install openssl")
    ext = directory / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    ca_key = directory / "ca.key"
    steps = [
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(files.ca),
         "-days", str(days), "-subj", "/CN=stream_app test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(files.key),
         "-out", str(directory / "server.csr"), "-subj", "/CN=localhost"],
        [openssl, "x509", "-req", "-in", str(directory / "server.csr"), "-CA", str(files.ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(files.cert), "-days", str(days), "-extfile", str(ext)],
    ]  # fmt: skip
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise StackError(f"`{' '.join(cmd[:3])} ...` failed: {res.stderr.strip()[-500:]}")
    files.key.chmod(0o600)
    files.bundle.write_text(files.key.read_text() + files.cert.read_text())
    files.bundle.chmod(0o600)
    return files


def kafka_sasl_properties(
    *,
    port: int,
    controller_port: int,
    users: Mapping[str, str],
    sasl_port: int,
    sasl_ssl_port: int | None = None,
    tls: TlsFiles | None = None,
) -> dict[str, object]:
    """server.properties overrides adding SASL listeners (PLAIN and SCRAM-SHA-256/512) beside PLAINTEXT.

    PLAIN users are listed in the JAAS config; SCRAM credentials are written into the cluster
    metadata when the log dir is formatted (``--add-scram``, see KafkaBroker). The PLAINTEXT
    listener stays for inter-broker traffic and the stack's own admin calls.
    """
    listeners = {"PLAINTEXT": port, "SASL_PLAINTEXT": sasl_port}
    if sasl_ssl_port and tls is not None:
        listeners["SASL_SSL"] = sasl_ssl_port
    props: dict[str, object] = {
        "listeners": ",".join(f"{n}://127.0.0.1:{p}" for n, p in listeners.items())
        + f",CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": ",".join(f"{n}://127.0.0.1:{p}" for n, p in listeners.items()),
        "listener.security.protocol.map": ",".join(f"{n}:{n}" for n in listeners) + ",CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
    }
    plain_users = " ".join(f'user_{u}="{p}"' for u, p in users.items())
    for name in listeners:
        if name == "PLAINTEXT":
            continue
        prefix = f"listener.name.{name.lower()}"
        props[f"{prefix}.plain.sasl.jaas.config"] = (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
        )
        for mech in ("scram-sha-256", "scram-sha-512"):
            props[f"{prefix}.{mech}.sasl.jaas.config"] = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    if "SASL_SSL" in listeners and tls is not None:
        props["listener.name.sasl_ssl.ssl.keystore.type"] = "PEM"
        props["listener.name.sasl_ssl.ssl.keystore.location"] = str(tls.bundle)
        props["listener.name.sasl_ssl.ssl.client.auth"] = "none"
    return props


def kafka_pom(version: str = KAFKA_VERSION, log4j_version: str = LOG4J_VERSION) -> str:
    deps = [
        ("org.apache.kafka", "kafka_2.13", version),
        ("org.apache.kafka", "kafka-tools", version),
        ("org.apache.logging.log4j", "log4j-slf4j-impl", log4j_version),
    ]
    dep_xml = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.stream_app</groupId><artifactId>kafka-jars</artifactId><version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
{dep_xml}
  </dependencies>
</project>
"""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock; serialises concurrent fetches/installs across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _log(msg: str) -> None:
    print(f"[stream_app.tools.stack] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Installation: Debian packages and Kafka jars
# --------------------------------------------------------------------------


def ensure_debian_packages(
    packages: Sequence[str], *, binaries: Mapping[str, str] | None = None, quiet: bool = True
) -> list[str]:
    """Install the Debian ``packages`` whose binary is missing; returns those installed.

    A package counts as present when its binary (``binaries[pkg]``, a known
    mapping, or the package name) is on PATH. Installing needs root (or
    password-less sudo); otherwise a StackError says what to run.
    """
    names = {**_PACKAGE_BINARY, **(binaries or {})}
    missing = [p for p in packages if shutil.which(names.get(p, p)) is None]
    if not missing:
        return []
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo") and subprocess.run(
        ["sudo", "-n", "true"], capture_output=True
    ).returncode == 0:
        prefix = ["sudo", "-n", "--preserve-env=DEBIAN_FRONTEND"]
    else:
        raise StackError(
            f"missing {', '.join(missing)} and not root: run "
            f"`sudo apt-get install -y {' '.join(missing)}` (Debian/Ubuntu) and retry"
        )
    if shutil.which("apt-get") is None:
        raise StackError(f"missing {', '.join(missing)} and no apt-get on this machine")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = [*prefix, "apt-get", "-q", "-y", "-o", "DPkg::Lock::Timeout=300"]
    with _file_lock(cache_dir() / "apt.lock"):
        still = [p for p in missing if shutil.which(names.get(p, p)) is None]
        if not still:
            return []
        if not quiet:
            _log(f"installing Debian packages: {' '.join(still)}")
        for cmd in (
            [*apt, "update"],
            [*apt, "install", "--no-install-recommends", *still],
        ):
            res = subprocess.run(
                cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
            )
            if res.returncode != 0:
                out = "\n".join((res.stdout + res.stderr).splitlines()[-_TAIL_LINES:])
                raise StackError(f"`{' '.join(cmd)}` failed ({res.returncode}):\n{out}")
    absent = [p for p in still if shutil.which(names.get(p, p)) is None]
    if absent:
        raise StackError(f"installed {', '.join(absent)} but its binary is still not on PATH")
    return still


def ensure_kafka_jars(version: str = KAFKA_VERSION, *, quiet: bool = True) -> Path:
    """Directory holding Kafka ``version``'s jars (plus a log4j binding), fetched with Maven if absent.

    Layout: ``<cache>/kafka-<version>/libs``. A ``.complete`` marker is written
    before the directory is renamed into place, and a lock file serialises
    concurrent callers, so a half-fetched directory is never used.
    """
    base = cache_dir() / f"kafka-{version}"
    libs = base / "libs"
    if (libs / ".complete").exists():
        return libs
    with _file_lock(base.parent / f"kafka-{version}.lock"):
        if (libs / ".complete").exists():  # another process finished meanwhile
            return libs
        ensure_debian_packages(["maven", "openjdk-17-jre-headless"], quiet=quiet)
        if not quiet:
            _log(f"fetching Kafka {version} jars from Maven Central into {libs}")
        base.mkdir(parents=True, exist_ok=True)
        (base / "pom.xml").write_text(kafka_pom(version))
        staging = Path(tempfile.mkdtemp(prefix="libs.tmp-", dir=base))
        log_path = base / "mvn.log"
        cmd = [
            "mvn", "-q", "-B", "-f", str(base / "pom.xml"),
            "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]  # fmt: skip
        with open(log_path, "w") as log:
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        jars = sorted(p.name for p in staging.glob("*.jar"))
        if res.returncode != 0 or f"kafka_2.13-{version}.jar" not in jars:
            shutil.rmtree(staging, ignore_errors=True)
            raise StackError(
                f"fetching Kafka {version} jars with Maven failed (exit {res.returncode}); "
                f"log {log_path}:\n{tail(log_path)}"
            )
        (staging / ".complete").write_text("\n".join(jars) + "\n")
        if libs.exists():  # stale, incomplete leftover from an interrupted older layout
            shutil.rmtree(libs)
        staging.rename(libs)
    return libs


# --------------------------------------------------------------------------
# Kafka admin: aiokafka's admin client behind synchronous calls
# --------------------------------------------------------------------------


def _run_sync(coro: Coroutine[object, object, _T]) -> _T:
    """Run ``coro`` to completion from synchronous code.

    ``asyncio.run`` cannot nest, so a caller already inside a running loop (an
    async test, the app) gets it run in a short-lived helper thread instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1, thread_name_prefix="stream_app.tools.stack") as pool:
        return pool.submit(asyncio.run, coro).result()


def _admin_call(
    bootstrap: str, fn: Callable[[AIOKafkaAdminClient], Awaitable[_T]], timeout: float
) -> _T:
    """``await fn(admin)`` on a fresh admin client, within ``timeout`` s; failures raise StackError."""

    async def session() -> _T:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="stream_app.tools.stack", request_timeout_ms=int(timeout * 1000)
        )
        try:
            async with asyncio.timeout(timeout):
                await admin.start()
                return await fn(admin)
        finally:
            await admin.close()

    try:
        return _run_sync(session())
    except TimeoutError as exc:
        raise StackError(f"Kafka at {bootstrap} did not answer within {timeout:g}s") from exc
    except (KafkaError, OSError) as exc:
        raise StackError(f"Kafka at {bootstrap}: {exc}") from exc


def kafka_metadata(bootstrap: str, topics: Sequence[str] | None = (), timeout: float = 5.0) -> dict:
    """``{"brokers": [(id, host, port)], "cluster_id", "controller": id, "topics": {...}}``.

    ``topics=()`` asks for no topics, ``None`` for all. Per topic: ``error``
    (Kafka error code) and ``partitions`` ({index: leader id, -1 if none}).
    """

    async def fetch(admin: AIOKafkaAdminClient) -> tuple[dict, list]:
        return await admin.describe_cluster(), await admin.describe_topics(None if topics is None else list(topics))

    cluster, described = _admin_call(bootstrap, fetch, timeout)
    return {
        "brokers": [(b["node_id"], b["host"], b["port"]) for b in cluster["brokers"]],
        "cluster_id": cluster["cluster_id"],
        "controller": cluster["controller_id"],
        "topics": {
            t["topic"]: {
                "error": t["error_code"],
                "partitions": {p["partition"]: -1 if p["error_code"] else p["leader"] for p in t["partitions"]},
            }
            for t in described
        },
    }


async def _await_leaders(admin: AIOKafkaAdminClient, topics: Sequence[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pending = [
            t["topic"] for t in await admin.describe_topics(list(topics))
            if t["error_code"] or not t["partitions"]
            or any(p["error_code"] or p["leader"] < 0 for p in t["partitions"])
        ]  # fmt: skip
        if not pending:
            return
        if time.monotonic() > deadline:
            raise StackError(f"topics without leaders after {timeout}s: {pending}")
        await asyncio.sleep(0.05)


def _check_topic_errors(op: str, results: Iterable[tuple], ok: set[int]) -> None:
    """Raise for per-topic error codes of a Create/DeleteTopics response, except those in ``ok``."""
    bad = [
        f"{name}: {for_code(code).__name__}" + (f" ({msg[0]})" if msg and msg[0] else "")
        for name, code, *msg in results
        if code and code not in ok
    ]
    if bad:
        raise StackError(f"{op} failed: " + "; ".join(bad))


# --------------------------------------------------------------------------
# Process management
# --------------------------------------------------------------------------

_live: set[_Service] = set()
_live_lock = threading.Lock()


def _preexec_die_with_parent(parent_pid: int):
    """Child setup: SIGTERM when the parent dies, so a killed test run leaves no JVM behind.

    Linux delivers PR_SET_PDEATHSIG when the *thread* that forked exits, so it is only
    armed for children started from the main thread (a worker thread, e.g. from
    asyncio.to_thread, would take its broker down with it); atexit covers the rest.
    """
    prctl = None
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(Exception):  # non-Linux: best effort
            prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork

    def setup() -> None:
        if prctl is not None:
            prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            if os.getppid() != parent_pid:  # parent died before prctl took effect
                os._exit(1)

    return setup


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        services = list(_live)
    for svc in services:
        with contextlib.suppress(Exception):
            svc.stop()


class _Service:
    """A child process with a log file, a readiness probe and stop/kill/restart."""

    name = "service"

    def __init__(self, workdir: str | os.PathLike | None, start_timeout: float) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"stream-app-{self.name}-")).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / f"{self.name}.log"

    # subclasses implement ------------------------------------------------
    def _prepare(self) -> None: ...
    def _command(self) -> list[str]: raise NotImplementedError
    def _probe(self) -> bool: raise NotImplementedError
    def _describe(self) -> str: return self.name

    # lifecycle -----------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def launch(self) -> None:
        """Start the process without waiting for readiness (see :meth:`wait_ready`)."""
        if self.running:
            return
        self._prepare()
        cmd = self._command()
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: Ctrl-C in a terminal reaches us, and we stop children in order.
                start_new_session=True,
                preexec_fn=_preexec_die_with_parent(os.getpid()),
            )
        with _live_lock:
            _live.add(self)

    def wait_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        last_exc: Exception | None = None
        while True:
            if self.proc is None:
                raise StackError(f"{self.name} was not started")
            code = self.proc.poll()
            if code is not None:
                self._forget()
                raise StackError(
                    f"{self._describe()} exited with code {code} while starting; "
                    f"{log_excerpt(self.log_path)}"
                )
            try:
                if self._probe():
                    return
            except (OSError, ValueError, StackError) as exc:
                last_exc = exc
            if time.monotonic() > deadline:
                self.stop(timeout=10)
                raise StackError(
                    f"{self._describe()} not ready after {self.start_timeout:.0f}s "
                    f"(last probe error: {last_exc!r}); {log_excerpt(self.log_path)}"
                )
            time.sleep(0.1)

    def start(self) -> "_Service":
        """Start and block until the service answers; raises StackError with the log tail."""
        self.launch()
        self.wait_ready()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL the whole process group."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._killpg(proc)
        self._forget()

    def kill(self) -> None:
        """SIGKILL without a clean shutdown (crash simulation); data dir and port are kept."""
        if self.proc is not None and self.proc.poll() is None:
            self._killpg(self.proc)
        self._forget()

    def restart(self, *, hard: bool = False, stop_timeout: float = 30.0) -> None:
        """Stop (or kill, with ``hard``) and start again on the same port with the same data."""
        self.kill() if hard else self.stop(timeout=stop_timeout)
        self.start()

    def close(self) -> None:
        """Stop and remove the work dir if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _killpg(proc: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()

    def _forget(self) -> None:
        with _live_lock:
            _live.discard(self)


class RedisServer(_Service):
    """``redis-server`` on a loopback port; ``.redis_url`` once started.

    With ``persist`` (default) an append-only file under the work dir keeps the
    data across :meth:`restart`; ``fsync="always"`` also survives :meth:`kill`.
    """

    name = "redis"

    def __init__(
        self,
        workdir: str | os.PathLike | None = None,
        *,
        port: int = 0,
        persist: bool = True,
        fsync: str = "everysec",
        start_timeout: float = 30.0,
        users: Mapping[str, str] | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(workdir, start_timeout)
        self.port = port or free_ports(1)[0]
        self.persist = persist
        self.fsync = fsync
        # Optional ACL users (name -> password; the default user is then off) and a TLS port.
        self.users = dict(users or {})
        self.tls = tls
        self.tls_port = free_ports(1)[0] if tls is not None else None
        self.data_dir = self.workdir / "redis-data"
        self.conf_path = self.workdir / "redis.conf"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def rediss_url(self) -> str:
        """TLS URL (without credentials); needs ``tls``."""
        if self.tls_port is None:
            raise StackError("RedisServer was started without tls")
        return f"rediss://127.0.0.1:{self.tls_port}/0"

    def _describe(self) -> str:
        return f"redis-server on 127.0.0.1:{self.port}"

    def _prepare(self) -> None:
        ensure_debian_packages(["redis-server"])
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(
            redis_config(
                port=self.port,
                data_dir=self.data_dir,
                persist=self.persist,
                fsync=self.fsync,
                extra_lines=redis_security_lines(self.users, self.tls, self.tls_port),
            )
        )

    def _command(self) -> list[str]:
        return [shutil.which("redis-server") or "redis-server", str(self.conf_path)]

    def _probe(self) -> bool:
        import redis

        user, password = next(iter(self.users.items()), (None, None))
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, username=user, password=password)
        try:
            # Raises BusyLoadingError while the AOF is replayed: not ready yet.
            client.ping()
            # Our process, not another server already on this port.
            return client.info("server").get("process_id") == self.pid
        except redis.RedisError:
            return False
        finally:
            client.close()


class KafkaBroker(_Service):
    """A single-node KRaft Kafka (broker+controller) on loopback; ``.bootstrap`` once started.

    The log dir is formatted on first start and reused by :meth:`restart`, so
    topics, messages and committed offsets survive it.
    """

    name = "kafka"

    def __init__(
        self,
        workdir: str | os.PathLike | None = None,
        *,
        port: int = 0,
        controller_port: int = 0,
        version: str = KAFKA_VERSION,
        heap: str = "512m",
        node_id: int = 1,
        extra_config: Mapping[str, object] | None = None,
        start_timeout: float = 90.0,
        sasl_users: Mapping[str, str] | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(workdir, start_timeout)
        self._auto_ports = not port and not controller_port
        if not port or not controller_port:
            p, c = free_ports(2)
            port, controller_port = port or p, controller_port or c
        self.port, self.controller_port = port, controller_port
        # Optional SASL listeners (user -> password, PLAIN and SCRAM), SASL_SSL too with ``tls``.
        self.sasl_users = dict(sasl_users or {})
        self.tls = tls
        self._pick_sasl_ports()
        self.version, self.heap, self.node_id = version, heap, node_id
        self.extra_config = dict(extra_config or {})
        self.data_dir = self.workdir / "kafka-data"
        self.conf_path = self.workdir / "server.properties"
        self.log4j_path = self.workdir / "log4j2.properties"
        self._libs: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """SASL_PLAINTEXT listener (needs ``sasl_users``)."""
        if not self.sasl_port:
            raise StackError("KafkaBroker was started without sasl_users")
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """SASL_SSL listener (needs ``sasl_users`` and ``tls``; clients trust ``tls.ca``)."""
        if not self.sasl_ssl_port:
            raise StackError("KafkaBroker was started without sasl_users and tls")
        return f"127.0.0.1:{self.sasl_ssl_port}"

    def _pick_sasl_ports(self) -> None:
        self.sasl_port = self.sasl_ssl_port = None
        if self.sasl_users:
            self.sasl_port, self.sasl_ssl_port = free_ports(2)
            if self.tls is None:
                self.sasl_ssl_port = None

    def _describe(self) -> str:
        return f"Kafka {self.version} on {self.bootstrap}"

    def _java(self) -> str:
        home = os.environ.get("JAVA_HOME")
        if home and (Path(home) / "bin" / "java").exists():
            return str(Path(home) / "bin" / "java")
        java = shutil.which("java")
        if java is None:
            raise StackError("no `java` on PATH (Java 17+ needed): apt-get install openjdk-17-jre-headless")
        return java

    def _jvm(self, main: str, *args: str, heap: str) -> list[str]:
        assert self._libs is not None
        return [
            self._java(),
            f"-Xmx{heap}",
            "-Xms64m",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_path}",
            "-cp",
            f"{self._libs}/*",
            main,
            *args,
        ]

    def _prepare(self) -> None:
        self._libs = ensure_kafka_jars(self.version)
        self.log4j_path.write_text(LOG4J2_PROPERTIES)
        self.conf_path.write_text(
            kafka_server_properties(
                port=self.port,
                controller_port=self.controller_port,
                data_dir=self.data_dir,
                node_id=self.node_id,
                extra={**self._sasl_properties(), **self.extra_config},
            )
        )
        if not (self.data_dir / "meta.properties").exists():
            # SCRAM credentials live in the cluster metadata: written when the log dir is formatted.
            scram = [
                arg
                for user, password in self.sasl_users.items()
                for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512")
                for arg in ("--add-scram", f"{mech}=[name={user},password={password}]")
            ]
            cmd = self._jvm(
                "kafka.tools.StorageTool", "format", "--ignore-formatted",
                # "=": a random id may start with "-", which argparse would take for an option.
                f"--cluster-id={kafka_cluster_id()}", "-c", str(self.conf_path), *scram, heap="256m",
            )  # fmt: skip
            with open(self.log_path, "ab") as log:
                log.write(b"\n===== formatting log dir\n")
                log.flush()
                res = subprocess.run(cmd, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            if res.returncode != 0:
                raise StackError(
                    f"formatting the Kafka log dir failed (exit {res.returncode}); "
                    f"{log_excerpt(self.log_path)}"
                )

    def _command(self) -> list[str]:
        return self._jvm("kafka.Kafka", str(self.conf_path), heap=self.heap)

    def _sasl_properties(self) -> dict[str, object]:
        if not self.sasl_users or not self.sasl_port:
            return {}
        return kafka_sasl_properties(
            port=self.port,
            controller_port=self.controller_port,
            users=self.sasl_users,
            sasl_port=self.sasl_port,
            sasl_ssl_port=self.sasl_ssl_port,
            tls=self.tls,
        )

    def _cluster_id(self) -> str | None:
        try:
            text = (self.data_dir / "meta.properties").read_text()
        except FileNotFoundError:
            return None
        ids = [ln.split("=", 1)[1].strip() for ln in text.splitlines() if ln.startswith("cluster.id=")]
        return ids[0] if ids else None

    def _probe(self) -> bool:
        # Ready = the broker answers a metadata request listing itself and a controller,
        # from our cluster (not some other Kafka already listening on this port).
        # A bare connect first: aiokafka logs an error for every refused bootstrap while the JVM boots.
        socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
        md = kafka_metadata(self.bootstrap, (), timeout=2)
        return (
            any(b[0] == self.node_id for b in md["brokers"])
            and md["controller"] >= 0
            and md["cluster_id"] == self._cluster_id()
        )

    def start(self) -> "KafkaBroker":
        try:
            super().start()
        except StackError as exc:
            # Auto-picked ports can be taken between picking and binding: retry once on fresh ones.
            if not (self._auto_ports and "Address already in use" in str(exc)):
                raise
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.port, self.controller_port = free_ports(2)
            self._pick_sasl_ports()
            super().start()
        return self

    # topic admin ---------------------------------------------------------
    def create_topics(
        self,
        topics: Iterable[str],
        *,
        partitions: int = 1,
        replication: int = 1,
        config: Mapping[str, object] | None = None,
        exist_ok: bool = True,
        timeout: float = 30.0,
    ) -> list[str]:
        """Create topics and wait until every partition has a leader; returns the names."""
        names = list(dict.fromkeys(topics))
        if not names:
            return []
        configs = {str(k): str(v) for k, v in (config or {}).items()}
        new = [NewTopic(n, partitions, replication, topic_configs=configs) for n in names]
        ok = {TopicAlreadyExistsError.errno} if exist_ok else set()

        async def create(admin: AIOKafkaAdminClient) -> None:
            response = await admin.create_topics(new, timeout_ms=int(timeout * 1000))
            _check_topic_errors("create_topics", response.topic_errors, ok)
            await _await_leaders(admin, names, timeout)

        _admin_call(self.bootstrap, create, 2 * timeout + 5)  # the broker's create timeout, then the leader wait
        return names

    def wait_topics(self, topics: Sequence[str], *, timeout: float = 30.0) -> None:
        """Block until each topic exists and all its partitions have a leader."""
        _admin_call(self.bootstrap, lambda admin: _await_leaders(admin, topics, timeout), timeout + 5)

    def delete_topics(self, topics: Iterable[str], *, timeout: float = 30.0) -> None:
        names = list(topics)

        async def delete(admin: AIOKafkaAdminClient) -> list:
            return (await admin.delete_topics(names, timeout_ms=int(timeout * 1000))).topic_error_codes

        results = _admin_call(self.bootstrap, delete, timeout + 5)
        _check_topic_errors("delete_topics", results, {UnknownTopicOrPartitionError.errno})

    def list_topics(self) -> dict[str, int]:
        """Topic name -> partition count (internal topics included)."""
        md = kafka_metadata(self.bootstrap, None)
        return {name: len(t["partitions"]) for name, t in md["topics"].items()}


class LocalStack:
    """Kafka + Redis in one work dir: ``.bootstrap``, ``.redis_url``, ``.env()``.

    >>> with LocalStack() as stack:                      # doctest: +SKIP
    ...     stack.create_topics(["cs.tickets"], partitions=4)
    ...     print(stack.bootstrap, stack.redis_url)
    """

    def __init__(
        self,
        workdir: str | os.PathLike | None = None,
        *,
        kafka_port: int = 0,
        controller_port: int = 0,
        redis_port: int = 0,
        redis_persist: bool = True,
        kafka_version: str = KAFKA_VERSION,
        kafka_heap: str = "512m",
        kafka_config: Mapping[str, object] | None = None,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="stream-app-stack-")).resolve()
        self.kafka = KafkaBroker(
            self.workdir / "kafka",
            port=kafka_port,
            controller_port=controller_port,
            version=kafka_version,
            heap=kafka_heap,
            extra_config=kafka_config,
        )
        self.redis = RedisServer(self.workdir / "redis", port=redis_port, persist=redis_persist)

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def redis_url(self) -> str:
        return self.redis.redis_url

    def env(self) -> dict[str, str]:
        """Settings environment (``STREAM_APP_*``) pointing the app at this stack."""
        return {"STREAM_APP_KAFKA_BOOTSTRAP": self.bootstrap, "STREAM_APP_REDIS_URL": self.redis_url}

    def start(self) -> "LocalStack":
        try:
            # Redis is up in milliseconds; start it while the JVM boots.
            self.kafka.launch()
            self.redis.start()
            self.kafka.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        # Kafka first: clients see the broker go before their state store.
        try:
            self.kafka.stop()
        finally:
            self.redis.stop()

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def create_topics(self, topics: Iterable[str], **kw) -> list[str]:
        return self.kafka.create_topics(topics, **kw)

    def __enter__(self) -> "LocalStack":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------
# Command line: `stream-app stack ...` / `python -m stream_app.tools.stack ...`
# --------------------------------------------------------------------------


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
        args.workdir, kafka_port=kafka_port, controller_port=controller_port, redis_port=redis_port
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
        print(f"  Kafka {stack.kafka.version}  {stack.bootstrap}   log {stack.kafka.log_path}")
        print(f"  Redis         {stack.redis_url}   log {stack.redis.log_path}")
        if topics:
            print(f"  topics ({settings.topic_partitions} partitions): {', '.join(topics)}")
        for k, v in stack.env().items():
            print(f"export {k}={v}")
        print("Ctrl-C stops the stack.", flush=True)
        while not stopping.wait(1.0):
            for svc in (stack.kafka, stack.redis):
                if not svc.running:
                    print(f"{svc.name} exited unexpectedly; {log_excerpt(svc.log_path)}", file=sys.stderr)
                    return 1
        print("stopping...", flush=True)
        return 0
    finally:
        stack.close() if args.workdir is None else stack.stop()
        for s, h in old.items():
            signal.signal(s, h)


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


if __name__ == "__main__":
    sys.exit(main_stack())
