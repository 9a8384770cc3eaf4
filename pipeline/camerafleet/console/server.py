"""The console's HTTP face, on Starlette (which Ray Serve already brings): the page, its JSON API, the
live stream of changes (server-sent events) and the frames themselves, scaled down for the grid.

Read-only by design: GET and HEAD only, no control actions. Every path parameter is checked against what
the console knows (a camera of the fleet, one of its recent processed frames) before anything is read, and
the bucket's own guards check the stored URI again; errors are short JSON that never carry a URI, a path
or a trace."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from importlib import resources

import cv2
import simplejpeg
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from camerafleet.api.outcomes import Reason
from camerafleet.bucket import BucketError, FrameBucket
from camerafleet.bucket.base import clip_key
from camerafleet.console.clips import ClipMaker, ClipNotKept
from camerafleet.console.view import FleetView, FrameNotKept
from camerafleet.imaging import ImageError, decode_jpeg

log = logging.getLogger("camerafleet.console")

TILE_WIDTH = 480  # pixels: frames are scaled down to this for the grid (the detail view gets them whole)
TILE_QUALITY = 75
MAX_STREAMS = 64  # open live streams; more viewers than this get a 503 instead of slowing the fleet's process
MAX_SEQ = 2**53  # larger numbers are no frame of any camera (and not safe in the page's JavaScript)
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/console.css": ("console.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class FrameCache:
    """Scaled JPEGs of recent frames, so every viewer of a tile costs one bucket read and one encode."""

    def __init__(self, bucket: FrameBucket, entries: int):
        self.bucket = bucket
        self.entries = entries
        self.cache: OrderedDict[tuple[str, tuple[str, int], bool], bytes] = OrderedDict()

    async def get(self, camera_id: str, frame: tuple[str, int], uris: list[str], tile: bool) -> bytes:
        """`frame`: which of the camera's frames, ("frame", seq) or ("snapshot", capture ms); from the first of `uris`
        the bucket has."""
        key = (camera_id, frame, tile)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        data = await asyncio.to_thread(self._load, uris, tile)
        self.cache[key] = data
        while len(self.cache) > self.entries:
            self.cache.popitem(last=False)
        return data

    def _load(self, uris: list[str], tile: bool) -> bytes:
        for i, uri in enumerate(uris):
            try:
                data = self.bucket.get(uri)
                break
            except BucketError as err:
                if err.reason != Reason.FRAME_MISSING or i == len(uris) - 1:
                    raise
        if not tile:
            return data
        image = decode_jpeg(data, cover=(TILE_WIDTH, 1))
        height, width = image.shape[:2]
        if width > TILE_WIDTH:
            image = cv2.resize(image, (TILE_WIDTH, max(1, round(height * TILE_WIDTH / width))), interpolation=cv2.INTER_AREA)
        return bytes(simplejpeg.encode_jpeg(image, quality=TILE_QUALITY, colorspace="BGR"))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _Headers:
    """Security headers on every response (a plain ASGI middleware: it leaves the live stream unbuffered)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if api and "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


TOKEN_COOKIE = "camerafleet_console"
OPEN_PATHS = frozenset({"/healthz", "/favicon.ico"})  # probes, and what a browser asks before any page


class _TokenGate:
    """With a token, every request but the probes must carry it: `Authorization: Bearer <token>` (scripts) or
    the console's cookie. A browser opens `/?token=<token>` once: the answer sets the cookie (HttpOnly, this
    site only) and sends it on to the same page without the token, so it stays out of history and logs."""

    def __init__(self, app: ASGIApp, token: str):
        self.app, self.token = app, token.encode()

    def _carries(self, request: Request) -> bool:
        offered = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or request.cookies.get(TOKEN_COOKIE, "")
        return hmac.compare_digest(offered.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        if given is not None and hmac.compare_digest(given.encode(), self.token):
            answer: Response = RedirectResponse(request.url.remove_query_params("token").path, status_code=303)
            answer.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        elif self._carries(request):
            await self.app(scope, receive, send)
            return
        else:
            answer = _error(401, "this console needs its token: open /?token=<token> once (CAMERAFLEET_CONSOLE_TOKEN of the run)")
        await answer(scope, receive, send)


def console_app(
    view: FleetView,
    frames: FrameCache,
    refresh_s: float,
    stopping: asyncio.Event,
    token: str | None = None,
    clips: ClipMaker | None = None,
) -> Starlette:
    """The console's ASGI app over `view`; live streams push changes every `refresh_s` and end on `stopping`.
    With `token`, only requests that carry it are answered (`_TokenGate`)."""
    streams = 0

    def camera_of(request: Request) -> str:
        camera_id = request.path_params["camera_id"]
        if camera_id not in view.cameras:
            raise HTTPException(404, "no such camera in this fleet")
        return str(camera_id)

    async def page(request: Request) -> Response:
        name, media_type = STATIC[request.url.path]
        return Response(resources.files("camerafleet.console").joinpath("static", name).read_bytes(), media_type=media_type)

    async def fleet(request: Request) -> Response:
        return Response(view.snapshot().model_dump_json(by_alias=True), media_type="application/json")

    async def camera(request: Request) -> Response:
        return Response(view.detail(camera_of(request)).model_dump_json(by_alias=True), media_type="application/json")

    async def frame(request: Request) -> Response:
        seq: int = request.path_params["seq"]
        if seq > MAX_SEQ:
            raise HTTPException(404, "no such frame")
        return await _jpeg(request, lambda camera_id: [view.frame_uri(camera_id, seq)], ("frame", seq))

    async def snapshot(request: Request) -> Response:
        capture_ms: int = request.path_params["capture_ms"]
        if capture_ms > MAX_SEQ:
            raise HTTPException(404, "no such snapshot")

        def uris(camera_id: str) -> list[str]:  # once the frame has expired, its copy kept for clips
            uri = view.snapshot_uri(camera_id, capture_ms)
            return [uri, frames.bucket.uri_of(clip_key(camera_id, capture_ms))] if clips else [uri]

        return await _jpeg(request, uris, ("snapshot", capture_ms))

    async def _jpeg(request: Request, uris_of: Callable[[str], list[str]], key: tuple[str, int]) -> Response:
        """A kept frame's JPEG, whole or scaled for a tile, from the first of `uris_of`'s places that has it
        (FrameNotKept when the console keeps no such frame)."""
        camera_id = camera_of(request)
        size = request.query_params.get("size", "tile")
        if size not in ("tile", "full"):
            raise HTTPException(400, "size must be tile or full")
        try:
            data = await frames.get(camera_id, key, uris_of(camera_id), tile=size == "tile")
        except FrameNotKept as err:
            raise HTTPException(404, str(err)) from None
        except BucketError as err:
            if err.reason == Reason.BUCKET_UNAVAILABLE:
                raise HTTPException(503, "the frame bucket does not answer; try again") from None
            log.info("console: %s %s of camera %s not served: %s", *key, camera_id, err.reason)
            raise HTTPException(404, "frame no longer in the bucket (expired)") from None
        except ImageError:
            raise HTTPException(404, "frame cannot be decoded") from None
        return Response(data, media_type="image/jpeg", headers={"cache-control": "private, max-age=300, immutable"})

    async def clip(request: Request) -> Response:
        if clips is None:
            raise HTTPException(404, "this fleet keeps no clips (events.clips.enabled is false)")
        try:
            camera_id, start_ms, end_ms = view.event_span(request.query_params.get("event", ""))
            data = await clips.clip(camera_id, start_ms, end_ms)
        except (FrameNotKept, ClipNotKept) as err:
            raise HTTPException(404, str(err)) from None
        except BucketError:
            raise HTTPException(503, "the frame bucket does not answer; try again") from None
        return Response(data, media_type="video/mp4", headers={"cache-control": "private, max-age=60"})

    async def events(request: Request) -> Response:
        if streams >= MAX_STREAMS:
            raise HTTPException(503, f"at most {MAX_STREAMS} live views at once")

        async def changes() -> AsyncIterator[bytes]:
            nonlocal streams
            sent: dict[str, int] | None = None
            streams += 1  # counted here, where `finally` is sure to run: a client gone before the first byte never starts it
            try:
                while not stopping.is_set():
                    snapshot = view.snapshot(since=sent)
                    sent = view.versions()
                    yield b"data: " + snapshot.model_dump_json(by_alias=True).encode() + b"\n\n"
                    # At most one update per refresh_s whatever the fleet does: tiles refresh at a bounded rate.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), timeout=refresh_s)
            finally:
                streams -= 1

        return StreamingResponse(changes(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    async def timeline(request: Request) -> Response:
        q = request.query_params
        camera = q.get("camera") or None
        if camera is not None and camera not in view.cameras:
            raise HTTPException(404, "no such camera in this fleet")
        kind = q.get("kind") or None
        if kind not in (None, "object", "zone", "loiter", "line"):
            raise HTTPException(400, "kind must be object, zone, loiter or line")
        answer = view.timeline(camera=camera, place=q.get("place") or None, label=q.get("label") or None, kind=kind)
        answer = answer.model_copy(update={"clips": clips is not None})
        return Response(answer.model_dump_json(by_alias=True), media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)  # browsers ask; an empty answer keeps their consoles clean

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail if request.url.path.startswith("/api/") or exc.status_code != 404 else "not found")

    get = ["GET", "HEAD"]
    routes = [
        *(Route(path, page, methods=get) for path in STATIC),
        Route("/healthz", healthz, methods=get),
        Route("/favicon.ico", no_icon, methods=get),
        Route("/api/fleet", fleet, methods=get),
        Route("/api/events", events, methods=get),
        Route("/api/cameras/{camera_id}", camera, methods=get),
        Route("/api/cameras/{camera_id}/frames/{seq:int}", frame, methods=get),
        Route("/api/cameras/{camera_id}/snapshots/{capture_ms:int}", snapshot, methods=get),
        Route("/api/timeline", timeline, methods=get),
        Route("/api/clip.mp4", clip, methods=get),
    ]
    gate = [Middleware(_TokenGate, token=token)] if token else []
    return Starlette(routes=routes, middleware=[Middleware(_Headers), *gate], exception_handlers={HTTPException: http_error})
