"""The one logging set-up of every CameraFleet process (the `camerafleet` CLI, Ray actors, Serve
replicas, the operator): one line format, our own INFO lines (camera opened, camera failed) visible,
chatty client libraries held at WARNING. Only the standard library, so the operator can use it too."""

from __future__ import annotations

import logging

QUIET_LIBRARIES = ("aiokafka", "kafka", "urllib3", "httpx", "kubernetes")
FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    """Configure the root logger once per process (again only changes the level)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=FORMAT)
    root.setLevel(level)
    logging.getLogger("camerafleet").setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
