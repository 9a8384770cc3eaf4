"""The S3 frame bucket against a real MinIO server: round trip, containment, expiry."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from minio.commonconfig import ENABLED, Filter
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from camerafleet.api.manifest import BucketSpec
from camerafleet.bucket import BucketError, open_bucket
from camerafleet.bucket.base import capture_ms_of_clip_key, clip_folder, clip_key, clip_name

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def s3_bucket(minio_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", minio_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", minio_server.secret_key)
    bucket = open_bucket(BucketSpec(uri="s3://bucket-tests/frames", endpoint=minio_server.endpoint, max_frame_bytes=4096))
    bucket.prepare(ttl_seconds=300)
    return bucket


def test_round_trip_and_limits(s3_bucket):
    uri = s3_bucket.put("1/0-000000001.jpg", b"jpeg")
    assert uri == "s3://bucket-tests/frames/1/0-000000001.jpg"
    assert s3_bucket.get(uri) == b"jpeg"
    for bad, reason in (
        ("s3://bucket-tests/frames/1/missing.jpg", "frame_missing"),
        ("s3://bucket-tests/frames/../secrets/x.jpg", "uri_outside_bucket"),
        ("s3://bucket-tests/other/1/x.jpg", "uri_outside_bucket"),
        ("s3://another/frames/1/x.jpg", "uri_outside_bucket"),
    ):
        with pytest.raises(BucketError) as info:
            s3_bucket.get(bad)
        assert info.value.reason == reason, bad
    big = s3_bucket.put("1/big.jpg", b"x" * 5000)
    with pytest.raises(BucketError) as info:
        s3_bucket.get(big)
    assert info.value.reason == "frame_too_large"
    # Frames are JPEGs, the runs' summaries JSON: a browser or a download tool takes each for what it is.
    summary = s3_bucket.put("Summaries/shop/run-1-consumer.json", b"{}")
    types = {
        key: s3_bucket.client.stat_object(s3_bucket.bucket, key).content_type
        for key in ("frames/1/0-000000001.jpg", "frames/Summaries/shop/run-1-consumer.json")
    }
    assert summary.endswith(".json") and types == {
        "frames/1/0-000000001.jpg": "image/jpeg",
        "frames/Summaries/shop/run-1-consumer.json": "application/json",
    }, types


def test_lifecycle_rule_and_sweep(s3_bucket):
    rules = s3_bucket.client.get_bucket_lifecycle("bucket-tests").rules
    assert [(r.rule_id, r.expiration.days, r.rule_filter.prefix) for r in rules] == [("camerafleet frames/", 1, "frames/")]
    # The new object must still be younger than the TTL when the sweep looks at it: 5 s leave a busy machine
    # time for the put and the sweep's listing; the old one is past it by then whatever the speed.
    old = s3_bucket.put("2/old.jpg", b"a")
    time.sleep(6)
    new = s3_bucket.put("2/new.jpg", b"b")
    assert s3_bucket.sweep("2", ttl_seconds=5) == 1
    assert s3_bucket.get(new) == b"b"
    with pytest.raises(BucketError):
        s3_bucket.get(old)


def test_unreachable_store_is_a_reason_not_a_crash(minio_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", minio_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", minio_server.secret_key)
    bucket = open_bucket(BucketSpec(uri="s3://nowhere/frames", endpoint="http://127.0.0.1:1"))
    with pytest.raises(BucketError) as info:
        bucket.put("1/x.jpg", b"a")
    assert info.value.reason == "bucket_unavailable"


def test_a_shared_bucket_keeps_every_other_rule_and_object(minio_server, monkeypatch):
    """Issue 24: a bucket shared with other data and other fleets. Preparing merges the fleet's expiry rule into
    the lifecycle (the owner's rule and another fleet's stay; preparing again replaces only its own), and camera
    1's sweep stays in camera 1's folder (not camera 10's, not a key that merely starts with 1)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", minio_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", minio_server.secret_key)
    a = open_bucket(BucketSpec(uri="s3://shared-bucket/tenant-a/frames", endpoint=minio_server.endpoint))
    b = open_bucket(BucketSpec(uri="s3://shared-bucket/tenant-b/frames", endpoint=minio_server.endpoint))
    a.client.make_bucket("shared-bucket")
    owners = Rule(ENABLED, rule_filter=Filter(prefix="backups/"), rule_id="owner-backups", expiration=Expiration(days=30))
    a.client.set_bucket_lifecycle("shared-bucket", LifecycleConfig([owners]))
    a.prepare(ttl_seconds=300)
    b.prepare(ttl_seconds=300)
    a.prepare(ttl_seconds=3 * 86400)  # a's TTL edited: its rule replaced, nobody else's

    def rules():
        return {(r.rule_id, r.rule_filter.prefix, r.expiration.days) for r in a.client.get_bucket_lifecycle("shared-bucket").rules}

    assert rules() == {
        ("owner-backups", "backups/", 30),
        ("camerafleet tenant-a/frames/", "tenant-a/frames/", 3),
        ("camerafleet tenant-b/frames/", "tenant-b/frames/", 1),
    }
    mine, tens, lookalike = a.put("1/0-000000001.jpg", b"1"), a.put("10/0-000000001.jpg", b"10"), a.put("1x/0-000000001.jpg", b"1x")
    theirs = b.put("1/0-000000001.jpg", b"b1")
    assert a.sweep("1", ttl_seconds=0) == 1
    with pytest.raises(BucketError):
        a.get(mine)
    assert (a.get(tens), a.get(lookalike), b.get(theirs)) == (b"10", b"1x", b"b1")


def test_the_stack_charts_pipeline_user_reaches_only_its_bucket(minio_server, monkeypatch, tmp_path):
    """Issue 24: the stack chart gives the fleets a MinIO user of their own, limited by the chart's policy
    (`charts/camerafleet-stack/files/pipeline-s3-policy.json`, applied here as the chart's Job applies it with
    `mc admin`): the pipeline's bucket works end to end with it (expiry rule, frames, sweep), and nothing else
    does (another bucket, a new bucket, the list of buckets)."""
    from minio import Minio
    from minio.credentials import StaticProvider
    from minio.error import S3Error
    from minio.minioadmin import MinioAdmin

    root = minio_server.client()
    for name in ("stack-frames", "someone-elses"):
        if not root.bucket_exists(name):
            root.make_bucket(name)
    root.put_object("someone-elses", "secret.txt", io.BytesIO(b"x"), 1)
    policy = json.loads((ROOT / "charts/camerafleet-stack/files/pipeline-s3-policy.json").read_text().replace("BUCKET", "stack-frames"))
    admin = MinioAdmin(
        endpoint=minio_server.host, credentials=StaticProvider(minio_server.access_key, minio_server.secret_key), secure=False
    )
    admin.user_add("cf-pipeline", "pipeline-secret-1234")
    admin.policy_add("camerafleet-pipeline", policy=policy)
    admin.attach_policy(["camerafleet-pipeline"], user="cf-pipeline")

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "cf-pipeline")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "pipeline-secret-1234")
    bucket = open_bucket(BucketSpec(uri="s3://stack-frames/default/example", endpoint=minio_server.endpoint))
    bucket.prepare(ttl_seconds=300)  # reads and merges the lifecycle
    uri = bucket.put("1/0-000000001.jpg", b"frame")
    assert bucket.get(uri) == b"frame" and bucket.sweep("1", ttl_seconds=0) == 1

    user = Minio(minio_server.host, access_key="cf-pipeline", secret_key="pipeline-secret-1234", secure=False)
    for denied in (
        lambda: user.get_object("someone-elses", "secret.txt"),
        lambda: user.put_object("someone-elses", "mine.txt", io.BytesIO(b"y"), 1),
        lambda: user.make_bucket("a-new-bucket"),
        lambda: user.remove_bucket("stack-frames"),
    ):
        with pytest.raises(S3Error) as err:
            denied()
        assert err.value.code == "AccessDenied", err.value.code
    assert [b.name for b in user.list_buckets()] == ["stack-frames"], "MinIO lists only the buckets a user may reach"


def test_kept_frames_are_server_side_copies_that_outlive_the_frames_sweep(s3_bucket):
    uris = {ms: s3_bucket.put(f"3/{ms}.jpg", str(ms).encode()) for ms in (900, 1000, 12_000)}
    for ms, uri in uris.items():
        s3_bucket.keep(uri, clip_key("3", ms))
    time.sleep(1.5)  # the listing's times are the store's, to the millisecond: the frames are past a TTL of 1 s
    assert s3_bucket.sweep("3", ttl_seconds=1) == 3  # the camera's frames, not the kept copies under Clips/
    keys = s3_bucket.keys(clip_folder("3"), clip_name(950), clip_name(12_000), most=10)
    assert [capture_ms_of_clip_key(k) for k in keys] == [1000, 12_000]
    assert s3_bucket.get(s3_bucket.uri_of(keys[1])) == b"12000"
    assert s3_bucket.keys(clip_folder("3"), clip_name(0), clip_name(99_999), most=1) == [clip_key("3", 900)]
    with pytest.raises(BucketError) as info:
        s3_bucket.keep(uris[900], clip_key("3", 901))  # swept before it could be kept
    assert info.value.reason == "frame_missing"
