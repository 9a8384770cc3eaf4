"""What the Kafka and MinIO dev servers have in common: a server process on free loopback ports.

Both servers are plain child processes started in their own process group (so that signals aimed at
the test runner or ``make`` do not hit them, and stopping them also stops anything they spawned), whose
output goes to a log file in their data directory rather than to our stdout. ``LocalServer`` holds
that life cycle once: start and wait until the server really answers, stop with SIGTERM then SIGKILL,
restart on the same ports and data (fault-injection tests rely on it), and clean-up at interpreter
exit unless the server was started detached for ``make demo``.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self, TextIO

DEFAULT_STOP_TIMEOUT_S = 30.0
_LOWEST_PORT = 20000  # below: Ray's default worker ports (10002-19999) and well-known services


class ServerStartError(RuntimeError):
    """A dev server did not start or did not become ready in time; the message says why."""


class MissingToolError(RuntimeError):
    """A program needed to fetch or run a dev server (java, mvn, go) is not installed."""


def require_executable(name: str, hint: str) -> str:
    """The absolute path of program ``name`` on PATH, or a ``MissingToolError`` carrying ``hint``."""
    found = shutil.which(name)
    if found is None:
        raise MissingToolError(f"'{name}' was not found on PATH. {hint}")
    return found


def _ephemeral_port_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux default


def free_port(exclude: Iterable[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now (and not in ``exclude``).

    It is taken outside the kernel's ephemeral range: a server that is stopped for a while (fault
    injection) must get its port back on restart, and a port in that range may meanwhile become the
    local end of some outgoing connection, or even of a client that, retrying to connect to the
    stopped server, connects to itself (TCP simultaneous open on loopback). Ports below 20000 are
    avoided too: Ray gives its workers ports 10002-19999.
    """
    excluded = set(exclude)
    low, high = _ephemeral_port_range()
    if low - _LOWEST_PORT >= 2000:
        candidates = range(_LOWEST_PORT, low)
    elif 65535 - high >= 2000:
        candidates = range(high + 1, 65536)
    else:
        candidates = range(0)  # no room outside the ephemeral range: let the kernel choose
    rng = random.SystemRandom()
    for _ in range(200 if candidates else 0):
        port = rng.choice(candidates)
        if port not in excluded and _can_bind(port):
            return port
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in excluded:
            return port
    raise OSError("could not find a free TCP port on 127.0.0.1")


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_accepts(port: int, timeout_s: float = 0.5, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host``:``port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 40, *, redact: Sequence[str] = ()) -> str:
    """The last ``lines`` lines of a text file, with every string in ``redact`` masked."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log file at {path})"
    selected = "\n".join(text.splitlines()[-lines:])
    for secret in redact:
        if secret:
            selected = selected.replace(secret, "********")
    return selected or f"({path} is empty)"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state is the first field after the parenthesised command name.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def pid_cmdline(pid: int) -> list[str]:
    """The command line of process ``pid`` (empty if it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def stop_process_group(pid: int, timeout_s: float = DEFAULT_STOP_TIMEOUT_S, popen: subprocess.Popen[bytes] | None = None) -> None:
    """Send SIGTERM to process group ``pid``, wait up to ``timeout_s``, then SIGKILL it.

    With ``timeout_s <= 0`` it is sent SIGKILL straight away, as in a crash.

    ``pid`` must lead its own process group (started with ``start_new_session=True``). Pass the
    ``Popen`` when the process is our child so that it is reaped rather than left a zombie.
    """

    def exited(wait_s: float) -> bool:
        if popen is not None:
            try:
                popen.wait(timeout=wait_s)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.1)
        return not pid_alive(pid)

    steps = [(signal.SIGTERM, timeout_s)] if timeout_s > 0 else []
    for sig, wait_s in [*steps, (signal.SIGKILL, 10.0)]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        if exited(wait_s):
            # Also reap/kill whatever else is left in the group (the leader is gone).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            return
    raise RuntimeError(f"process {pid} survived SIGKILL; is it stuck in the kernel (D state)?")


def _die_with_parent() -> None:
    """In a forked child: ask Linux to SIGKILL us when the thread that forked us dies.

    Used for fetch/build commands, which only live while the calling thread waits for them, so that
    a fetch killed with SIGKILL does not leave mvn or go running on, writing into the cache.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: an interrupted fetch may leave its command running


def run_with_heartbeat(
    argv: list[str],
    log: Path,
    *,
    cwd: Path,
    what: str,
    out: TextIO,
    env: Mapping[str, str] | None = None,
    every_s: float = 15.0,
    detail: Callable[[], str] | None = None,
) -> int:
    """Run ``argv`` with its output in ``log``, saying every ``every_s`` that it is still running.

    ``detail()``, if given, adds a word on the progress to each of those lines. Returns the exit
    status; the process is killed if we are interrupted.
    """
    started = time.monotonic()
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            preexec_fn=_die_with_parent,
        )
        try:
            while True:
                try:
                    return proc.wait(timeout=every_s)
                except subprocess.TimeoutExpired:
                    extra = f", {detail()}" if detail is not None else ""
                    print(f"[camerafleet]   {what} still running ({time.monotonic() - started:.0f} s elapsed{extra})", file=out, flush=True)
        except BaseException:
            proc.kill()
            proc.wait()
            raise


_live_servers: weakref.WeakSet[LocalServer] = weakref.WeakSet()


@atexit.register
def _stop_attached_servers() -> None:
    for server in list(_live_servers):
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            server.stop(timeout_s=10.0)


class ManagedProcesses:
    """Context-manager behaviour shared by one server and a group of them: entering starts what is
    not running; leaving stops it and deletes the data directory if it was a temporary one."""

    data_dir: Path
    _owns_data_dir: bool

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def is_running(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        """Stop and delete the data directory if it was a temporary one."""
        self.stop()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        if not self.is_running():
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class LocalServer(ManagedProcesses, abc.ABC):
    """A server run as a child process on loopback ports with its state in ``data_dir``.

    Subclasses fetch their tool and choose ports in ``_prepare`` (ports are chosen once and kept, so
    ``restart()`` comes back on the same address), say how to run it in ``_command``, and when it is
    ready in ``_ready``.

    Unless ``detached``, a running server is stopped when the interpreter exits. A temporary data
    directory (``data_dir=None``) is deleted by ``close()`` / leaving the ``with`` block; a given one is
    kept.
    """

    #: Short name used in messages, file names and the CLI ("kafka", "minio").
    kind: ClassVar[str]

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        startup_timeout_s: float = 90.0,
        detached: bool = False,
        out: TextIO | None = None,
    ) -> None:
        self._owns_data_dir = data_dir is None
        if data_dir is None:
            data_dir = tempfile.mkdtemp(prefix=f"camerafleet-{self.kind}-")
        self.data_dir: Path = Path(data_dir).absolute()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.startup_timeout_s = startup_timeout_s
        self.detached = detached
        self._out = out
        self._popen: subprocess.Popen[bytes] | None = None
        #: Seconds the last ``start()`` took from spawning the process to the server answering.
        self.startup_seconds: float | None = None

    # -- what subclasses provide ---------------------------------------------------------------

    @property
    @abc.abstractmethod
    def log_path(self) -> Path:
        """The server's own log file (for humans, and shown when startup fails)."""

    @property
    def stdout_path(self) -> Path:
        """Where the process's stdout and stderr go."""
        return self.data_dir / f"{self.kind}.out"

    @abc.abstractmethod
    def _prepare(self) -> None:
        """Fetch the tool if needed, choose the ports (first time only), write configuration."""

    @abc.abstractmethod
    def _command(self) -> tuple[list[str], Mapping[str, str]]:
        """The argv and the full environment of the server process."""

    @abc.abstractmethod
    def _ready(self) -> bool:
        """Whether the (running) server answers requests; called repeatedly until it does."""

    def _secrets(self) -> Sequence[str]:
        """Strings to mask in log excerpts shown in error messages."""
        return ()

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (it is also its process group id)."""
        return self._popen.pid if self._popen is not None else None

    def is_running(self) -> bool:
        """Whether the server process is alive (not whether it answers; see ``start``)."""
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> Self:
        """Start the server and return once it answers requests.

        Raises ``ServerStartError`` (with the tail of the server's log) if it exits or does not become
        ready within ``startup_timeout_s``; the process is stopped in that case.
        """
        if self.is_running():
            raise RuntimeError(f"{self.kind} server is already running (pid {self.pid})")
        self._prepare()
        argv, env = self._command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.stdout_path, "ab") as stdout:
            stdout.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {argv[0]}\n".encode())
            stdout.flush()
            try:
                self._popen = subprocess.Popen(
                    argv,
                    cwd=self.data_dir,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServerStartError(f"could not run {argv[0]}: {exc}") from exc
        if not self.detached:
            _live_servers.add(self)
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop(timeout_s=5.0)
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, started: float) -> None:
        assert self._popen is not None
        deadline = started + self.startup_timeout_s
        while True:
            code = self._popen.poll()
            if code is not None:
                raise ServerStartError(f"the {self.kind} server exited with status {code} during startup.\n" + self._diagnostics())
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"the {self.kind} server did not become ready within "
                    f"{self.startup_timeout_s:.0f} s (pid {self._popen.pid}).\n" + self._diagnostics()
                )
            time.sleep(0.2)

    def _diagnostics(self) -> str:
        parts = [f"--- last lines of {self.log_path} ---", tail(self.log_path, redact=self._secrets())]
        if self.stdout_path != self.log_path:
            parts += [f"--- last lines of {self.stdout_path} (stdout/stderr) ---", tail(self.stdout_path, 20, redact=self._secrets())]
        parts.append(f"--- full log: {self.log_path}; data directory: {self.data_dir} ---")
        return "\n".join(parts)

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop the server: SIGTERM, wait up to ``timeout_s`` for a clean shutdown, then SIGKILL.

        Ports and data are kept, so ``start()`` afterwards brings the same server back.
        Does nothing if it is not running.
        """
        popen, self._popen = self._popen, None
        _live_servers.discard(self)
        if popen is None:
            return
        stop_process_group(popen.pid, timeout_s, popen=popen)

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL, no clean shutdown), as a crash would."""
        self.stop(timeout_s=0.0)

    def restart(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> Self:
        """Stop (cleanly) and start again on the same ports with the same data."""
        self.stop(timeout_s)
        return self.start()

    def _say(self, message: str) -> None:
        print(f"[camerafleet] {message}", file=self._out or sys.stderr, flush=True)
