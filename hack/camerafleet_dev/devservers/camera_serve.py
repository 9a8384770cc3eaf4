"""Test IP cameras: RTSP (H.264 / H.265, GStreamer's RTSP server) and MJPEG over HTTP, from JPEG frames.

Run with the *system* Python, which has GStreamer's GObject bindings from Debian packages
(`python3-gi`, `gir1.2-gst-rtsp-server-1.0`); ``camera.py`` starts it as a dev server. Every camera
path plays the same looping frames (a demo clip, rendered to JPEGs at the served size) in real time:

- ``rtsp://HOST:PORT/<name>`` for each ``--rtsp NAME=CODEC`` (``h264`` or ``h265``), encoded live with a
  fixed keyframe interval (``--keyframe-interval-frames``, no scene-cut keyframes) and no B-frames, as
  cameras do; one encoder per path, shared by all clients (``set_shared``), so many test cameras can
  point at one path;
- ``http://HOST:HTTP_PORT/<name>.mjpeg`` for each ``--mjpeg NAME``: ``multipart/x-mixed-replace``, one
  JPEG part per frame, as IP cameras serve it.

With ``CAMERA_SERVER_USER`` / ``CAMERA_SERVER_PASSWORD`` in the environment both require those
credentials (RTSP and HTTP Basic); they are never printed. Stopping the process with SIGSTOP is a
stalled camera (connections stay open, nothing arrives); killing it is a camera gone.

    /usr/bin/python3 camera_serve.py --frames DIR --fps 30 --rtsp-port P --rtsp cam1=h264 \
        --http-port Q --mjpeg cam2
"""

from __future__ import annotations

import argparse
import base64
import hmac
import os
import signal
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ENCODERS = {
    # Fast presets so a 2-core test machine encodes 1080p30 live; H.264 main profile (CABAC, deblocking) as
    # cameras send it, which costs a decoder what a real camera costs; zerolatency: no B-frames, like most cameras.
    "h264": "x264enc tune=zerolatency speed-preset=superfast bitrate={kbps} key-int-max={gop} "
    'option-string="scenecut=0:min-keyint={gop}" ! video/x-h264,profile=main ! rtph264pay name=pay0 pt=96 config-interval=-1',
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={gop} "
    'option-string="scenecut=0:min-keyint={gop}:bframes=0" ! rtph265pay name=pay0 pt=96 config-interval=-1',
}


def load_frames(directory: Path) -> list[bytes]:
    frames = [p.read_bytes() for p in sorted(directory.glob("*.jpg"))]
    if not frames:
        sys.exit(f"no .jpg frames in {directory}")
    return frames


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the first SOF marker."""
    i = 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        i += 2 + length
    raise ValueError("no SOF marker")


class Feed:
    """Pushes the frames into one media's appsrc at the frame rate, each stamped with its capture time (a live
    source). A camera stamps a frame when its sensor takes it, so the stamps are exactly one frame period apart
    however late the frame is sent; stamping on push (``do-timestamp``) would make them as irregular as this
    process's timer on a busy machine (tens of ms), and the keyframe interval the pipeline measures on the
    camera's clock with them."""

    def __init__(self, appsrc: Gst.Element, frames: list[bytes], fps: float):
        self.appsrc, self.frames, self.fps, self.index = appsrc, frames, fps, 0
        self.duration = int(Gst.SECOND / fps)
        self.start: float | None = None  # monotonic time of frame 0, once the media runs
        self.base = 0  # running time of frame 0
        self.timer = GLib.timeout_add(max(1, int(500 / fps)), self._tick)

    def _tick(self) -> bool:
        if self.start is None:
            running = self.appsrc.get_current_running_time()
            if running == Gst.CLOCK_TIME_NONE:
                return True  # the media is not playing yet: no clock to stamp with
            self.start, self.base = time.monotonic(), running
        # Push every frame whose time has come (the timer runs at twice the rate and catches up if late).
        while self.index <= (time.monotonic() - self.start) * self.fps:
            buf = Gst.Buffer.new_wrapped(self.frames[self.index % len(self.frames)])
            buf.pts = self.base + round(self.index * Gst.SECOND / self.fps)
            buf.duration = self.duration
            if self.appsrc.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                return False  # the media went away
            self.index += 1
        return True

    def stop(self) -> None:
        GLib.source_remove(self.timer)


def rtsp_server(args: argparse.Namespace, frames: list[bytes], user: str | None, password: str | None) -> GstRtspServer.RTSPServer:
    width, height = jpeg_size(frames[0])
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.rtsp_port))
    if user is not None and password is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
    mounts = server.get_mount_points()
    for spec in args.rtsp:
        name, _, codec = spec.partition("=")
        encoder = ENCODERS[codec].format(gop=args.keyframe_interval_frames, kbps=args.bitrate_kbps)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f"( appsrc name=src is-live=true format=time "
            f"caps=image/jpeg,width={width},height={height},framerate={round(args.fps)}/1 "
            f"! jpegdec ! videoconvert ! video/x-raw,format=I420 ! {encoder} )"
        )
        factory.set_shared(True)
        if user is not None:
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_role("viewer")
            permissions.add_permission_for_role("viewer", "media.factory.access", True)
            permissions.add_permission_for_role("viewer", "media.factory.construct", True)
            factory.set_permissions(permissions)

        def configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
            feed = Feed(media.get_element().get_child_by_name("src"), frames, args.fps)
            media.connect("unprepared", lambda _m: feed.stop())

        factory.connect("media-configure", configure)
        mounts.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen for RTSP on {args.address}:{args.rtsp_port}")
    return server


def mjpeg_server(args: argparse.Namespace, frames: list[bytes], user: str | None, password: str | None) -> ThreadingHTTPServer:
    paths = {f"/{name}.mjpeg" for name in args.mjpeg}
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if user is not None else None
    period = 1 / args.fps

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if expected is not None and not hmac.compare_digest(self.headers.get("Authorization", ""), expected):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.end_headers()
                return
            if self.path not in paths:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            start, index = time.monotonic(), 0
            try:
                while True:
                    frame = frames[index % len(frames)]
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(frame))
                    self.wfile.write(frame + b"\r\n")
                    index += 1
                    time.sleep(max(0.0, start + index * period - time.monotonic()))
            except (BrokenPipeError, ConnectionResetError):
                return

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write("mjpeg: " + format % args + "\n")

    socketserver.TCPServer.allow_reuse_address = True
    httpd = ThreadingHTTPServer((args.address, args.http_port), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=Path, required=True, help="directory of .jpg frames, played in name order, looping")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--rtsp-port", type=int, default=0)
    parser.add_argument("--rtsp", action="append", default=[], help="NAME=h264|h265, served at rtsp://ADDRESS:PORT/NAME")
    parser.add_argument("--keyframe-interval-frames", type=int, default=30)
    parser.add_argument("--bitrate-kbps", type=int, default=4000)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--mjpeg", action="append", default=[], help="NAME, served at http://ADDRESS:HTTP_PORT/NAME.mjpeg")
    args = parser.parse_args()
    for spec in args.rtsp:
        if spec.partition("=")[2] not in ENCODERS:
            parser.error(f"--rtsp {spec}: the codec must be one of {sorted(ENCODERS)}")
    user, password = os.environ.get("CAMERA_SERVER_USER"), os.environ.get("CAMERA_SERVER_PASSWORD")
    Gst.init(None)
    frames = load_frames(args.frames)
    loop = GLib.MainLoop()
    keep = []
    if args.rtsp:
        keep.append(rtsp_server(args, frames, user, password))
    if args.mjpeg:
        keep.append(mjpeg_server(args, frames, user, password))
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print(f"serving {len(frames)} frames at {args.fps} fps: rtsp {args.rtsp} mjpeg {args.mjpeg}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
