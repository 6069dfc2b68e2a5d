"""Installing what the local stack runs: Debian packages (apt-get) and Apache Kafka's jars
(Maven Central), into a cache outside the repository, safe against concurrent callers."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .errors import TAIL_LINES, StackError, tail

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


def cache_dir() -> Path:
    """Cache root for downloaded artefacts (outside the repository)."""
    env = os.environ.get("STREAM_APP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stream_app"



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
                out = "\n".join((res.stdout + res.stderr).splitlines()[-TAIL_LINES:])
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
