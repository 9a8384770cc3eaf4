"""`camerafleet-operator`: runs the kopf operator against the cluster of KUBECONFIG (or in-cluster)."""

from __future__ import annotations

import argparse
import logging
import sys

import kopf

from camerafleet.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="camerafleet-operator", description="Reconcile CameraFleet resources.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--namespace", action="append", default=[], help="watch only this namespace (repeatable)")
    where.add_argument("--all-namespaces", action="store_true", help="watch every namespace (the default)")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL ('' to disable)")
    parser.add_argument("--metrics-port", type=int, default=9090, help="port of the Prometheus /metrics endpoint (0 disables it)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    import camerafleet_operator.handlers  # noqa: F401 - registers the handlers
    from camerafleet_operator import metrics

    metrics.serve(args.metrics_port)

    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
