"""Command line for the dev servers, used by the Makefile (cache warm-up, ``make demo``).

    python -m camerafleet_dev.devservers fetch {kafka,minio,controlplane,helm,prometheus,all}
    python -m camerafleet_dev.devservers kafka --data-dir DIR --pid-file F [--env-file F]
    python -m camerafleet_dev.devservers kafka --stop --pid-file F [--env-file F]
    python -m camerafleet_dev.devservers kafka --status --pid-file F
    python -m camerafleet_dev.devservers minio --data-dir DIR --pid-file F --env-file F
    python -m camerafleet_dev.devservers minio --stop --pid-file F [--env-file F]
    python -m camerafleet_dev.devservers controlplane --data-dir DIR --pid-file F [--env-file F]
    python -m camerafleet_dev.devservers controlplane --stop --pid-file F [--env-file F]

Starting runs the server in the background, detached from this process (it outlives it), waits until it
answers, records its pid in the pid file and prints its address as ``KEY=value`` lines on stdout (and
writes them to the env file, created with mode 0600, in a form both ``make`` and ``sh`` can read). The
MinIO secret key goes only to the env file, never to the terminal. Starting is idempotent: if the pid
file names a live server, its settings are printed again. Progress and errors go to stderr.

The Kubernetes control plane is three processes (etcd, kube-apiserver, kube-controller-manager); its
pid file has one ``<component> <pid>`` line each, and it prints ``KUBECONFIG=<data-dir>/kubeconfig``
(an admin kubeconfig).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ._process import (
    DEFAULT_STOP_TIMEOUT_S,
    LocalServer,
    MissingToolError,
    ServerStartError,
    pid_alive,
    pid_cmdline,
    stop_process_group,
)
from .cache import ToolFetchError, cache_root
from .controlplane import ETCD_VERSION, K8S_VERSION, KUBERAY_VERSION, ControlPlane, fetch_controlplane
from .helm import HELM_VERSION, fetch_helm
from .kafka import KAFKA_VERSION, KafkaServer, fetch_kafka
from .minio import MINIO_VERSION, MinioServer, fetch_minio
from .prometheus import PROMETHEUS_VERSION, fetch_prometheus

#: Variables written to the env file that must never be printed.
_SECRET_KEYS = frozenset({"AWS_SECRET_ACCESS_KEY"})


def _is_kafka(cmdline: Sequence[str]) -> bool:
    return "kafka.Kafka" in cmdline


def _is_minio(cmdline: Sequence[str]) -> bool:
    return bool(cmdline) and Path(cmdline[0]).name == "minio" and "server" in cmdline


def _say(message: str) -> None:
    print(f"[camerafleet] {message}", file=sys.stderr, flush=True)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; the file is readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp uses mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError:
        _say(f"ignoring {pid_file}: it does not hold a process id")
        return None


def _live_pid(pid_file: Path, matches: Callable[[Sequence[str]], bool], kind: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and is a ``kind`` server; else ``None``.

    A pid file naming a dead process, or a process that is not ours (pid reused after a reboot), is
    stale and is removed.
    """
    pid = _read_pid(pid_file)
    if pid is None:
        return None
    if pid_alive(pid) and matches(pid_cmdline(pid)):
        return pid
    _say(f"removing stale pid file {pid_file} (pid {pid} is not a running {kind} server)")
    pid_file.unlink(missing_ok=True)
    return None


def _print_settings(settings: dict[str, str]) -> None:
    for key, value in settings.items():
        if key not in _SECRET_KEYS:
            print(f"{key}={value}", flush=True)


def _env_file_settings(env_file: Path | None) -> dict[str, str]:
    if env_file is None or not env_file.is_file():
        return {}
    settings = {}
    for line in env_file.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


def _report_running(what: str, kind: str, pid_file: Path, env_file: Path | None) -> int:
    """Starting what already runs: say so and print its stored settings again."""
    _say(f"{what}; stop it with: python -m camerafleet_dev.devservers {kind} --stop --pid-file {pid_file}")
    settings = _env_file_settings(env_file)
    if not settings:
        _say(f"its settings are unknown ({env_file or 'no --env-file given'}); stop and start it again to get them")
        return 1
    _print_settings(settings)
    return 0


def _start(
    args: argparse.Namespace,
    kind: str,
    matches: Callable[[Sequence[str]], bool],
    make: Callable[[argparse.Namespace], LocalServer],
    settings_of: Callable[[LocalServer], dict[str, str]],
) -> int:
    pid_file: Path = args.pid_file
    env_file: Path | None = args.env_file
    running = _live_pid(pid_file, matches, kind)
    if running is not None:
        return _report_running(f"{kind} is already running (pid {running}, pid file {pid_file})", kind, pid_file, env_file)
    if args.data_dir is None:
        _say(f"starting {kind} needs --data-dir DIR (where its data and logs go)")
        return 2
    server = make(args)
    _say(f"starting {kind} in {server.data_dir} (log: {server.log_path}) ...")
    try:
        server.start()
    except (ServerStartError, MissingToolError, ToolFetchError) as exc:
        _say(f"could not start {kind}: {exc}")
        return 1
    assert server.pid is not None
    _write_private(pid_file, f"{server.pid}\n")
    settings = settings_of(server)
    if env_file is not None:
        _write_private(env_file, "".join(f"{key}={value}\n" for key, value in settings.items()))
    _say(
        f"{kind} is running (pid {server.pid}, ready in {server.startup_seconds:.1f} s)"
        + (f"; settings in {env_file}" if env_file is not None else "")
    )
    _print_settings(settings)
    return 0


def _stop(args: argparse.Namespace, kind: str, matches: Callable[[Sequence[str]], bool]) -> int:
    pid_file: Path = args.pid_file
    pid = _live_pid(pid_file, matches, kind)
    if pid is None:
        _say(f"{kind} is not running (pid file {pid_file}); nothing to stop")
    else:
        _say(f"stopping {kind} (pid {pid}) ...")
        stop_process_group(pid, args.stop_timeout)
        pid_file.unlink(missing_ok=True)
        _say(f"{kind} stopped")
    if args.env_file is not None:
        args.env_file.unlink(missing_ok=True)
    return 0


def _status(args: argparse.Namespace, kind: str, matches: Callable[[Sequence[str]], bool]) -> int:
    pid = _live_pid(args.pid_file, matches, kind)
    if pid is None:
        print(f"{kind}: not running")
        return 3
    print(f"{kind}: running (pid {pid})")
    return 0


def _kafka_server(args: argparse.Namespace) -> LocalServer:
    return KafkaServer(args.data_dir, broker_port=args.port, detached=True, startup_timeout_s=args.startup_timeout)


def _kafka_settings(server: LocalServer) -> dict[str, str]:
    assert isinstance(server, KafkaServer)
    return {"KAFKA_BOOTSTRAP": server.bootstrap}


def _minio_server(args: argparse.Namespace) -> LocalServer:
    return MinioServer(args.data_dir, port=args.port, detached=True, startup_timeout_s=args.startup_timeout)


def _minio_settings(server: LocalServer) -> dict[str, str]:
    assert isinstance(server, MinioServer)
    return {"CAMERAFLEET_S3_ENDPOINT": server.endpoint, "AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}


def _controlplane_pids(pid_file: Path) -> dict[str, int]:
    """The live control-plane processes named in ``pid_file``, by component.

    A line naming a dead process or one that is not that component (pid reused) is dropped; a pid
    file with no live process left is removed.
    """
    live: dict[str, int] = {}
    try:
        lines = pid_file.read_text().splitlines()
    except FileNotFoundError:
        return live
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            component, pid = parts[0], int(parts[1])
            cmdline = pid_cmdline(pid)
            if pid_alive(pid) and cmdline and Path(cmdline[0]).name == component:
                live[component] = pid
    if not live:
        _say(f"removing stale pid file {pid_file} (no control-plane process of it is running)")
        pid_file.unlink(missing_ok=True)
    return live


def _controlplane_start(args: argparse.Namespace) -> int:
    pid_file: Path = args.pid_file
    env_file: Path | None = args.env_file
    running = _controlplane_pids(pid_file)
    if len(running) == len(ControlPlane.COMPONENT_KINDS):
        return _report_running(f"the control plane is already running (pids {running})", "controlplane", pid_file, env_file)
    if running:
        _say(
            f"only part of the control plane is running ({running}); stop it first with: "
            f"python -m camerafleet_dev.devservers controlplane --stop --pid-file {pid_file}"
        )
        return 1
    if args.data_dir is None:
        _say("starting the control plane needs --data-dir DIR (where its data and logs go)")
        return 2
    cluster = ControlPlane(args.data_dir, detached=True, startup_timeout_s=args.startup_timeout)
    _say(f"starting the Kubernetes control plane in {cluster.data_dir} (logs: {cluster.data_dir}/*.out) ...")
    try:
        cluster.start()
    except (ServerStartError, MissingToolError, ToolFetchError) as exc:
        _say(f"could not start the control plane: {exc}")
        return 1
    _write_private(pid_file, "".join(f"{kind} {pid}\n" for kind, pid in cluster.pids.items()))
    settings = {"KUBECONFIG": str(cluster.kubeconfig)}
    if env_file is not None:
        _write_private(env_file, "".join(f"{key}={value}\n" for key, value in settings.items()))
    _say(
        f"the control plane is running at {cluster.server} (pids {cluster.pids}, ready in "
        f"{cluster.startup_seconds:.1f} s)" + (f"; settings in {env_file}" if env_file else "")
    )
    _print_settings(settings)
    return 0


def _controlplane_stop(args: argparse.Namespace) -> int:
    pid_file: Path = args.pid_file
    running = _controlplane_pids(pid_file)
    if not running:
        _say(f"the control plane is not running (pid file {pid_file}); nothing to stop")
    else:
        # The controller manager first, etcd last: each only depends on the ones started before it.
        for kind in reversed(ControlPlane.COMPONENT_KINDS):
            if kind in running:
                _say(f"stopping {kind} (pid {running[kind]}) ...")
                stop_process_group(running[kind], args.stop_timeout)
        pid_file.unlink(missing_ok=True)
        _say("the control plane is stopped")
    if args.env_file is not None:
        args.env_file.unlink(missing_ok=True)
    return 0


def _controlplane_status(args: argparse.Namespace) -> int:
    running = _controlplane_pids(args.pid_file)
    if len(running) == len(ControlPlane.COMPONENT_KINDS):
        print(f"controlplane: running (pids {running})")
        return 0
    print("controlplane: not running" + (f" (only {running})" if running else ""))
    return 3


def _fetch(what: str) -> int:
    _say(f"tool cache: {cache_root()} (set CAMERAFLEET_CACHE to move it)")
    try:
        if what in ("kafka", "all"):
            home = fetch_kafka()
            _say(f"kafka {KAFKA_VERSION}: {home}")
        if what in ("minio", "all"):
            binary = fetch_minio()
            _say(f"minio {MINIO_VERSION}: {binary}")
        if what in ("controlplane", "all"):
            bin_dir = fetch_controlplane()
            _say(f"kubernetes {K8S_VERSION}, etcd {ETCD_VERSION}, KubeRay {KUBERAY_VERSION} CRDs: {bin_dir}")
        if what in ("helm", "all"):
            helm = fetch_helm()
            _say(f"helm {HELM_VERSION}: {helm}")
        if what in ("prometheus", "all"):
            bin_dir = fetch_prometheus()
            _say(f"prometheus and promtool {PROMETHEUS_VERSION}: {bin_dir}")
    except (MissingToolError, ToolFetchError) as exc:
        _say(f"fetch failed: {exc}")
        return 1
    return 0


def _add_server_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], kind: str, description: str, *, port: bool = True) -> None:
    parser = sub.add_parser(kind, help=description, description=description)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--stop", action="store_true", help="stop the server named by --pid-file")
    action.add_argument("--status", action="store_true", help="say whether it runs (exit status 0) or not (3)")
    parser.add_argument("--pid-file", type=Path, required=True, help="file holding the server's process id")
    parser.add_argument("--data-dir", type=Path, help="directory for its data and logs (to start)")
    parser.add_argument("--env-file", type=Path, help="file (mode 0600) to write the KEY=value settings to; removed by --stop")
    if port:
        parser.add_argument("--port", type=int, help="port to listen on (default: a free one)")
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for the server to answer (default: %(default)s)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT_S,
        metavar="SECONDS",
        help="how long --stop waits after SIGTERM before SIGKILL (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m camerafleet_dev.devservers",
        description="Fetch, start and stop the real Kafka broker and MinIO server used by the demo, the tests and the benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download/build the servers into the tool cache")
    fetch.add_argument("what", choices=("kafka", "minio", "controlplane", "helm", "prometheus", "all"))
    _add_server_parser(
        sub, "kafka", f"a Kafka {KAFKA_VERSION} broker (KRaft, single node) in the background; prints KAFKA_BOOTSTRAP=host:port"
    )
    _add_server_parser(
        sub,
        "minio",
        "a MinIO server in the background; prints "
        "CAMERAFLEET_S3_ENDPOINT and AWS_ACCESS_KEY_ID (the secret key "
        "only goes to --env-file, which is required to start it)",
    )
    _add_server_parser(
        sub,
        "controlplane",
        f"a Kubernetes {K8S_VERSION} control plane (etcd, kube-apiserver, "
        f"kube-controller-manager) with the KubeRay {KUBERAY_VERSION} CRDs in the "
        f"background; prints KUBECONFIG=<data-dir>/kubeconfig (admin)",
        port=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fetch":
        return _fetch(args.what)
    kind: str = args.command
    if kind == "controlplane":
        if args.stop:
            return _controlplane_stop(args)
        if args.status:
            return _controlplane_status(args)
        return _controlplane_start(args)
    matches = _is_kafka if kind == "kafka" else _is_minio
    if args.stop:
        return _stop(args, kind, matches)
    if args.status:
        return _status(args, kind, matches)
    if kind == "minio":
        if args.env_file is None:
            _say("starting minio needs --env-file F: the secret key is written only there")
            return 2
        return _start(args, kind, matches, _minio_server, _minio_settings)
    return _start(args, kind, matches, _kafka_server, _kafka_settings)


if __name__ == "__main__":
    sys.exit(main())
