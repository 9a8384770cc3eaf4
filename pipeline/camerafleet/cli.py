"""The `camerafleet` command: `run` a fleet manifest (one machine, or as a RayJob entrypoint) and
`validate` one before anything starts."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from camerafleet.api.manifest import ManifestError, load_manifest
from camerafleet.api.settings import SettingsError
from camerafleet.logs import configure_logging


def _validate(args: argparse.Namespace) -> int:
    fleet = load_manifest(args.manifest)
    spec = fleet.spec
    print(
        f"{args.manifest}: valid CameraFleet {fleet.metadata.name!r}: {len(spec.cameras)} cameras, "
        f"models {', '.join(f'{m.name} ({m.type})' for m in spec.models)}"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from camerafleet.runner import RunError, RunOptions, run_fleet
    from camerafleet.summary import format_summary

    fleet = load_manifest(args.manifest)
    opts = RunOptions(
        manifest=Path(args.manifest),
        duration_s=args.duration,
        role=args.role,
        progress_interval_s=args.progress_interval,
        drain_timeout_s=args.drain_timeout,
        summary_path=Path(args.summary) if args.summary else None,
        metrics_port=args.metrics_port,
        console_port=args.console_port,
        console_host=args.console_host,
        console_open=args.console_open,
    )
    try:
        summary = asyncio.run(run_fleet(fleet, opts))
    except RunError as err:
        print(f"camerafleet: cannot start fleet {fleet.metadata.name!r}: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0 if summary["ledger_balanced"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="camerafleet", description="Video analytics for camera fleets on Kafka and Ray Serve.")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check a CameraFleet manifest and exit")
    v.add_argument("manifest", help="path of the CameraFleet YAML")
    v.set_defaults(func=_validate)
    r = sub.add_parser("run", help="run a fleet (local Ray unless RAY_ADDRESS is set)")
    r.add_argument("manifest", help="path of the CameraFleet YAML; edits to cameras and actor counts apply while running")
    r.add_argument("--duration", type=float, default=0.0, metavar="SECONDS", help="stop after this long (default: until Ctrl-C / SIGTERM)")
    r.add_argument("--role", choices=["all", "producer", "consumer"], default="all", help="which part of the pipeline this process runs")
    r.add_argument("--progress-interval", type=float, default=5.0, metavar="SECONDS", help="how often a progress line is printed")
    r.add_argument(
        "--drain-timeout", type=float, default=60.0, metavar="SECONDS", help="how long to wait for consumers to catch up at the end"
    )
    r.add_argument("--summary", metavar="PATH", help="also write the run summary JSON here")
    r.add_argument("--metrics-port", type=int, metavar="PORT", help="serve this run's ledger for Prometheus on this port")
    r.add_argument(
        "--console-port", type=int, metavar="PORT", help="serve the fleet console (a web page of live camera tiles) on this port"
    )
    r.add_argument(
        "--console-host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address the console listens on (default 127.0.0.1; 0.0.0.0 in a Pod, behind its Service)",
    )
    r.add_argument("--console-open", action="store_true", help="also open the console in the desktop's web browser")
    r.set_defaults(func=_run)
    args = parser.parse_args(argv)
    configure_logging(logging.WARNING)  # the progress lines and the summary are the CLI's output
    try:
        return int(args.func(args))
    except (ManifestError, SettingsError) as err:
        print(err, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
