"""A local service as a child process: its log file, readiness probe, stop/kill/restart, free
loopback ports, and the guarantees that no child outlives the Python process that started it."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .errors import StackError, log_excerpt


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


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` now. SO_REUSEADDR as servers set it: a port whose
    last connections are in TIME_WAIT (a server that just stopped) counts as free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int) -> int:
    """``preferred`` when free, else any free loopback port."""
    return preferred if port_is_free(preferred) else free_ports(1)[0]


# Started services not yet stopped: stopped at exit so no child outlives us.
_live: set[Service] = set()
_live_lock = threading.Lock()


def die_with_parent(parent_pid: int):
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


class Service:
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
                preexec_fn=die_with_parent(os.getpid()),
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

    def start(self) -> "Service":
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
