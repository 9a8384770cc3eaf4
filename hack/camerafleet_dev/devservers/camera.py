"""Test IP cameras as a dev server: RTSP (H.264/H.265) and MJPEG over HTTP on loopback ports.

The server is ``camera_serve.py`` run by the system Python, which has GStreamer's GObject bindings from
Debian packages (installed here with apt when missing). It plays the frames of a demo clip, rendered as
JPEGs at the served size (``clips.write_demo_frames``), in real time. Tests stall a camera with
``pause()`` (SIGSTOP: connections stay open, nothing arrives), take it away with ``stop()`` and bring it
back on the same ports with ``start()``. Credentials go to the server through its environment only.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from . import debian
from ._process import LocalServer, ServerStartError, free_port, port_accepts

SYSTEM_PYTHON = "/usr/bin/python3"
#: The test cameras' Debian packages, by a file each provides.
DEBIAN_PACKAGES = {
    SYSTEM_PYTHON: "python3",
    "/usr/lib/python3/dist-packages/gi/__init__.py": "python3-gi",
    "/usr/lib/x86_64-linux-gnu/girepository-1.0/GstRtspServer-1.0.typelib": "gir1.2-gst-rtsp-server-1.0",
    "/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstjpeg.so": "gstreamer1.0-plugins-good",
    "/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstx264.so": "gstreamer1.0-plugins-ugly",
    "/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstx265.so": "gstreamer1.0-plugins-bad",
    "/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstvideoconvertscale.so": "gstreamer1.0-plugins-base",
}
_SCRIPT = Path(__file__).with_name("camera_serve.py")


class CameraServer(LocalServer):
    """RTSP paths ``rtsp`` (name -> ``h264``/``h265``) and MJPEG paths ``mjpeg`` playing ``frames_dir``."""

    kind = "cameras"

    def __init__(
        self,
        frames_dir: Path,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        rtsp: Mapping[str, str] | None = None,
        mjpeg: Sequence[str] = (),
        fps: float = 30.0,
        keyframe_interval_frames: int = 30,
        user: str | None = None,
        password: str | None = None,
        address: str = "127.0.0.1",
        out: TextIO | None = None,
    ) -> None:
        """`address`: where it listens (loopback; the cluster's node address for cameras its Pods reach)."""
        super().__init__(data_dir, startup_timeout_s=60.0, out=out)
        self.address = address
        self.frames_dir = Path(frames_dir)
        self.rtsp = dict(rtsp or {})
        self.mjpeg = list(mjpeg)
        self.fps = fps
        self.keyframe_interval_frames = keyframe_interval_frames
        self.user, self.password = user, password
        self.rtsp_port = free_port()
        self.http_port = free_port(exclude=[self.rtsp_port])

    def rtsp_url(self, name: str, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"rtsp://{auth}{self.address}:{self.rtsp_port}/{name}"

    def mjpeg_url(self, name: str, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"http://{auth}{self.address}:{self.http_port}/{name}.mjpeg"

    def pause(self) -> None:
        """Stall every camera: the process stops, its connections stay open and send nothing."""
        assert self.pid is not None, "the camera server is not running"
        os.killpg(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.pid is not None, "the camera server is not running"
        os.killpg(self.pid, signal.SIGCONT)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.pid is not None and self.is_running():
            os.killpg(self.pid, signal.SIGCONT)  # a paused server cannot handle SIGTERM
        super().stop(timeout_s)

    @property
    def log_path(self) -> Path:
        return self.stdout_path

    def _secrets(self) -> Sequence[str]:
        return (self.password,) if self.password else ()

    def _prepare(self) -> None:
        debian.install(DEBIAN_PACKAGES, self._out or sys.stderr, "the test cameras (GStreamer RTSP server)")
        if not any(self.frames_dir.glob("*.jpg")):
            raise ServerStartError(f"no .jpg frames in {self.frames_dir} (write them with clips.write_demo_frames)")

    def _command(self) -> tuple[list[str], Mapping[str, str]]:
        argv = [SYSTEM_PYTHON, str(_SCRIPT), "--frames", str(self.frames_dir), "--fps", str(self.fps), "--address", self.address]
        argv += ["--keyframe-interval-frames", str(self.keyframe_interval_frames)]
        argv += ["--rtsp-port", str(self.rtsp_port), "--http-port", str(self.http_port)]
        argv += [a for name, codec in self.rtsp.items() for a in ("--rtsp", f"{name}={codec}")]
        argv += [a for name in self.mjpeg for a in ("--mjpeg", name)]
        # The system Python with Debian's GStreamer bindings: nothing from our virtual environment.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.pop("CAMERA_SERVER_USER", None)
        env.pop("CAMERA_SERVER_PASSWORD", None)
        if self.user is not None and self.password is not None:
            env.update(CAMERA_SERVER_USER=self.user, CAMERA_SERVER_PASSWORD=self.password)
        return argv, env

    def _ready(self) -> bool:
        ports = ([self.rtsp_port] if self.rtsp else []) + ([self.http_port] if self.mjpeg else [])
        return all(port_accepts(port, host=self.address) for port in ports)
