"""Frames kept for clips: copies inside the bucket, counted, read back in time order and deleted after keepDays."""

from __future__ import annotations

import asyncio
import os
import time

from camerafleet import clip_store
from camerafleet.bucket import frame_key
from camerafleet.bucket.base import clip_key
from camerafleet.bucket.local import DirectoryBucket
from camerafleet.clip_store import ClipStore


def test_kept_frames_are_counted_listed_in_order_and_deleted_after_their_days(tmp_path, monkeypatch) -> None:
    bucket = DirectoryBucket(f"file://{tmp_path}/frames", max_frame_bytes=1000)
    store = ClipStore(bucket, keep_days=1)
    uris = {ms: bucket.put(frame_key("gate", 0, ms), b"%d" % ms) for ms in (1000, 1200, 1400)}
    gone = f"{bucket.root_uri}/{frame_key('gate', 0, 1600)}"  # expired before it could be kept
    asyncio.run(store.keep([("gate", ms, uri) for ms, uri in uris.items()] + [("gate", 1600, gone)]))
    assert store.counts == {"kept": 3, "not kept: frame_missing": 1}
    assert store.frames("gate", 1100, 1400, most=10) == [
        (1200, bucket.uri_of(clip_key("gate", 1200))),
        (1400, bucket.uri_of(clip_key("gate", 1400))),
    ]
    assert [ms for ms, _ in store.frames("gate", 0, 10**12, most=2)] == [1000, 1200]
    old = time.time() - 2 * 86400
    os.utime(bucket.root / clip_key("gate", 1000), (old, old))
    monkeypatch.setattr(clip_store, "SWEEP_EVERY_S", 0.0)  # the next keep of the camera sweeps its kept frames
    asyncio.run(store.keep([("gate", 1800, bucket.put(frame_key("gate", 0, 1800), b"1800"))]))
    assert store.counts["deleted"] == 1 and [ms for ms, _ in store.frames("gate", 0, 10**12, most=10)] == [1200, 1400, 1800]
    store.close()
