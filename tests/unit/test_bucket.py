"""The directory bucket, and the checks that keep every frame URI inside the bucket."""

import os
import time

import pytest
from pydantic import ValidationError

from camerafleet.api.manifest import BucketSpec
from camerafleet.api.settings import Settings, SettingsError
from camerafleet.bucket import BucketConfigError, BucketError, frame_key, open_bucket
from camerafleet.bucket.base import capture_ms_of_clip_key, clip_folder, clip_key, clip_name


@pytest.fixture
def bucket(tmp_path):
    b = open_bucket(BucketSpec(uri=f"file://{tmp_path}/frames", max_frame_bytes=2048))
    b.prepare(ttl_seconds=300)
    return b


def test_put_get_round_trip(bucket):
    uri = bucket.put(frame_key("1", 1000, 7), b"jpeg-bytes")
    assert uri.endswith("/frames/1/1000-000000007.jpg")
    assert bucket.get(uri) == b"jpeg-bytes"


ESCAPING_SUFFIXES = [
    "/../secret.jpg",
    "/1/../../etc/passwd",
    "/./1/x.jpg",
    "//etc/passwd",
    "/1//x.jpg",
    "/.hidden",
    "/1/x\x00.jpg",
    "/1/%2e%2e/%2e%2e/etc/passwd",
    "/1/..\\..\\secret.jpg",
    "/1/\uff0e\uff0e/secret.jpg",
    "/1/" + "a" * 2000 + ".jpg",
]


@pytest.mark.faults
@pytest.mark.parametrize("suffix", ESCAPING_SUFFIXES, ids=lambda s: s[:40])
def test_uris_escaping_the_bucket_are_refused(bucket, suffix, fault_report):
    row = fault_report.row(f"frame URI <bucket>{suffix[:60]!r} in a frame message", "refused with reason uri_outside_bucket, nothing read")
    with pytest.raises(BucketError) as info:
        bucket.get(bucket.root_uri + suffix)
    row.happened = f"BucketError {info.value.reason}"
    assert info.value.reason == "uri_outside_bucket"


@pytest.mark.faults
@pytest.mark.parametrize("uri", ["file:///etc/passwd", "s3://other-bucket/1/x.jpg", "/etc/passwd", "", None, 42])
def test_other_locations_are_refused(bucket, uri, fault_report):
    row = fault_report.row(f"frame URI {uri!r} (another bucket, an absolute path, not a string)", "refused with reason uri_outside_bucket")
    with pytest.raises(BucketError) as info:
        bucket.get(uri)
    row.happened = f"BucketError {info.value.reason}"
    assert info.value.reason == "uri_outside_bucket"


@pytest.mark.faults
def test_prefix_lookalike_bucket_is_refused(bucket, fault_report):
    row = fault_report.row(
        "frame URI in a sibling bucket whose name extends ours (<bucket>-evil/1/x.jpg)", "refused with reason uri_outside_bucket"
    )
    with pytest.raises(BucketError) as info:
        bucket.get(bucket.root_uri + "-evil/1/x.jpg")
    row.happened = f"BucketError {info.value.reason}"
    assert info.value.reason == "uri_outside_bucket"


@pytest.mark.faults
def test_symlink_out_of_the_bucket_is_refused(bucket, tmp_path, fault_report):
    row = fault_report.row(
        "frame key that is a symlink inside the bucket pointing outside it", "refused with reason uri_outside_bucket, the target not read"
    )
    (tmp_path / "outside.jpg").write_bytes(b"secret")
    (bucket.root / "1").mkdir()
    os.symlink(tmp_path / "outside.jpg", bucket.root / "1" / "link.jpg")
    with pytest.raises(BucketError) as info:
        bucket.get(bucket.root_uri + "/1/link.jpg")
    row.happened = f"BucketError {info.value.reason}"
    assert info.value.reason == "uri_outside_bucket"


@pytest.mark.faults
def test_s3_bucket_refuses_the_same_uris(monkeypatch, fault_report):
    row = fault_report.row(
        f"the {len(ESCAPING_SUFFIXES)} escaping URIs, another bucket and a lookalike prefix against an s3:// bucket",
        "every one refused with uri_outside_bucket before any request is made",
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    bucket = open_bucket(
        BucketSpec(uri="s3://frames/fleet-a", endpoint="http://127.0.0.1:9")
    )  # nothing listens: a request would fail differently
    uris = [bucket.root_uri + s for s in ESCAPING_SUFFIXES] + [
        "s3://frames/fleet-b/1/x.jpg",
        "s3://frames/fleet-a-evil/1/x.jpg",
        "s3://other/fleet-a/1/x.jpg",
    ]
    reasons = []
    for uri in uris:
        with pytest.raises(BucketError) as info:
            bucket.get(uri)
        reasons.append(info.value.reason)
    row.happened = f"{reasons.count('uri_outside_bucket')}/{len(uris)} refused with uri_outside_bucket; other reasons: {sorted(set(reasons) - {'uri_outside_bucket'}) or 'none'}"
    assert reasons == ["uri_outside_bucket"] * len(uris)


def test_missing_and_too_large(bucket):
    with pytest.raises(BucketError) as info:
        bucket.get(bucket.root_uri + "/1/nope.jpg")
    assert info.value.reason == "frame_missing"
    uri = bucket.put("1/big.jpg", b"x" * 4096)
    with pytest.raises(BucketError) as info:
        bucket.get(uri)
    assert info.value.reason == "frame_too_large"


def test_sweep_deletes_only_expired_frames(bucket):
    old, new = bucket.put("1/old.jpg", b"a"), bucket.put("1/new.jpg", b"b")
    past = time.time() - 1000
    os.utime(bucket.root / "1" / "old.jpg", (past, past))
    assert bucket.sweep("1", ttl_seconds=300) == 1
    assert bucket.get(new) == b"b"
    with pytest.raises(BucketError):
        bucket.get(old)
    assert bucket.sweep("never-written", ttl_seconds=1) == 0


def test_bad_bucket_uris():
    for uri in ("ftp://x/y", "file://host/path", "file:relative"):
        with pytest.raises(BucketConfigError, match="must"):
            open_bucket(BucketSpec(uri=uri))


def test_s3_needs_credentials(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(BucketConfigError, match="AWS_ACCESS_KEY_ID"):
        open_bucket(BucketSpec(uri="s3://frames/x", endpoint="http://127.0.0.1:9"))


@pytest.mark.parametrize("uri", ["s3://", "s3://frames", "s3://frames/", "s3://frames//"])
def test_a_bucket_root_is_refused_in_the_manifest_and_from_the_environment(uri):
    """Issue 24: a fleet's lifecycle rule and sweeper act on everything under its prefix; at a bucket's root that
    is every object of a bucket other data may share."""
    with pytest.raises(ValidationError, match="has no prefix"):
        BucketSpec(uri=uri)
    with pytest.raises(SettingsError, match="has no prefix"):
        Settings.from_env({"CAMERAFLEET_BUCKET_URI": uri}).apply_bucket(BucketSpec())


def test_a_kept_frame_outlives_the_frames_sweep_and_lists_in_time_order(bucket):
    uris = {ms: bucket.put(frame_key("1", 0, ms), bytes([ms % 256])) for ms in (900, 1000, 12_000)}
    for ms, uri in uris.items():
        bucket.keep(uri, clip_key("1", ms))
        bucket.keep(uri, clip_key("1", ms))  # again: a batch read twice
    past = time.time() - 1000
    for ms in uris:
        os.utime(bucket.root / frame_key("1", 0, ms), (past, past), follow_symlinks=False)
    assert bucket.sweep("1", ttl_seconds=300) == 3  # the camera's frames, not the kept copies beside them
    keys = bucket.keys(clip_folder("1"), clip_name(950), clip_name(12_000), most=10)
    assert [capture_ms_of_clip_key(k) for k in keys] == [1000, 12_000]  # 1000 sorts after 950 as 12000 does after 1000
    assert bucket.get(bucket.uri_of(keys[0])) == bytes([1000 % 256])
    assert bucket.keys(clip_folder("1"), clip_name(0), clip_name(99_999), most=1) == [clip_key("1", 900)]
    with pytest.raises(BucketError) as info:
        bucket.keep(uris[900], clip_key("1", 901))  # expired before it could be kept
    assert info.value.reason == "frame_missing"
    with pytest.raises(BucketError) as info:
        bucket.keep(bucket.root_uri + "/../x.jpg", clip_key("1", 902))
    assert info.value.reason == "uri_outside_bucket"
    assert bucket.keys(clip_folder("2"), "", "~", most=10) == []
