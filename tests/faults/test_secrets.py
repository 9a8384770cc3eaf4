"""Camera credentials never reach a log: the README promises that URLs are redacted and that a camera's
`sourceSecretEnv` keeps its password out of manifests, logs and status.

Pure tests pin `redact` on the URL shapes cameras really use (userinfo with unencoded `@` or `/`,
passwords in query strings) and check that a source that fails to open is named by its display name,
never by the secret URL. The integration test runs `camerafleet run` as a user does (its own local Ray
instance, the secret URLs in its environment), with cameras whose secret URLs cannot connect, so
their errors are logged again and again, and then searches every byte the run left behind: its
output, every file of the Ray session (raylet, GCS, worker and Serve logs), the results log and the
summary. (The operator side — status, Events, ConfigMap, RayJob, RayService — is checked in
tests/controlplane/test_operator_faults.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from camerafleet.sources import SourceError, redact
from camerafleet.sources.opening import open_source
from camerafleet_dev.devservers._process import free_port
from tests.fixtures.pipeline import health_model, run_in_its_own_process, write_fleet
from tests.fixtures.servers import SASL_PASSWORD, secure_env

pytestmark = pytest.mark.faults

PASSWORD = "S3cr3tPa55"  # in every secret below: if these bytes show up anywhere, a credential leaked


@pytest.mark.parametrize(
    "url, keeps",
    [
        (f"rtsp://admin:{PASSWORD}@nvr.local:554/stream1", "rtsp://***@nvr.local:554/stream1"),
        (f"RTSP://ADMIN:{PASSWORD}@nvr.local/s", "RTSP://***@nvr.local/s"),
        (f"rtsp://admin:p@{PASSWORD}@nvr.local/s", "@nvr.local/s"),  # '@' in the password, not percent-encoded
        (f"rtsp://admin:x/{PASSWORD}@nvr.local/s", "@nvr.local/s"),  # '/' in the password, not percent-encoded
        (f"http://nvr.local/video.mjpg?user=admin&pwd={PASSWORD}&channel=1", "channel=1"),
        (f"https://cam.local/snapshot?token={PASSWORD}", "https://cam.local/snapshot?token=***"),
        (f"rtsp://nvr.local/s?Password={PASSWORD}#frag", "rtsp://nvr.local/s?Password=***"),
    ],
)
def test_redact_hides_every_credential_shape(fault_report, url, keeps):
    row = fault_report.row(
        f"camera URL {url.replace(PASSWORD, '<password>')} in a log line", f"redacted: password gone, still recognisable ({keeps!r})"
    )
    shown = redact(url)
    row.happened = f"shown as {shown!r}"
    assert PASSWORD not in shown and keeps in shown


@pytest.mark.parametrize("url", ["rtsp://nvr.local:554/stream1", "synthetic:640x360@15", "/videos/lobby@2x.mp4", "clips/a.mp4"])
def test_redact_leaves_urls_without_credentials_alone(fault_report, url):
    row = fault_report.row(f"camera source {url!r} (no credentials) in a log line", "shown unchanged")
    row.happened = f"shown as {redact(url)!r}"
    assert redact(url) == url


@pytest.mark.parametrize("url", [f"srt://admin:{PASSWORD}@127.0.0.1:1/feed", f"rtsp://admin:{PASSWORD}@127.0.0.1:1/stream"])
def test_a_secret_source_that_fails_is_named_by_its_display_name(fault_report, url):
    row = fault_report.row(
        f"secret source {url.split(':')[0]}://admin:<password>@… that cannot be opened",
        "SourceError names the camera's display name, never the secret URL",
    )
    with pytest.raises(SourceError) as info:
        open_source(url, epoch_s=time.time(), inference_fps=5, stall_timeout_s=5, max_frame_age_s=5, display_name="dock-camera")
    row.happened = f"SourceError: {info.value}"
    assert PASSWORD not in str(info.value) and "dock-camera" in str(info.value)


def files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    hits.append(str(path.relative_to(root)))
            except OSError:
                pass  # a socket or a file removed while reading
    return hits


@pytest.mark.integration
def test_camera_passwords_reach_no_log_of_a_run(fault_report, secure_kafka, https_minio, tmp_path):
    """Also the pipeline end to end over the transports managed services require (issue 24): Kafka only over
    TLS with SASL/SCRAM-SHA-512 and the bucket on MinIO over HTTPS, both with certificates of a private CA,
    every credential from the environment; neither the SASL password nor the S3 key may leak either."""
    row = fault_report.row(
        "cameras with passwords in their URLs that cannot connect: two from sourceSecretEnv (rtsp://, srt://), "
        "one inline in the manifest with an unencoded '@' in the password; `camerafleet run` for 8 s against Kafka "
        "over SASL_SSL and MinIO over HTTPS",
        "no password or key is in any byte of the run's output, the Ray session's logs, results.jsonl or summary.json; "
        "the cameras are reported down with a redacted error, the healthy camera is processed, its frames in the bucket",
    )
    inline_password = "Inl1nePa55"
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "secrets",
        secure_kafka.secure_bootstrap,
        bucket={"uri": "s3://secure-frames/secrets", "endpoint": https_minio.endpoint},
        cameras=[
            {"id": "lobby", "source": "lobby-entrance", "sourceSecretEnv": "LOBBY_URL", "inferenceFps": 2},
            {"id": "dock", "source": "loading-dock", "sourceSecretEnv": "DOCK_URL", "inferenceFps": 2},
            {"id": "gate", "source": f"rtsp://admin:p@{inline_password}@127.0.0.1:1/gate", "inferenceFps": 2},
            {"id": "yard", "source": "synthetic:320x240@10", "inferenceFps": 2},
        ],
        models=[health_model()],
        producer={"actors": 1, "cpusPerActor": 0.25, "reconnectInitialSeconds": 0.2, "reconnectMaxSeconds": 1},
        consumer={"actors": 1, "cpusPerActor": 0.25, "maxFrameAgeMs": 60000},
    )
    ray_tmp = Path(tempfile.mkdtemp(prefix="cfsec-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    summary_path = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "KAFKA_BOOTSTRAP") and not k.startswith("AWS_")}
    env.update(
        secure_env(secure_kafka, https_minio),
        LOBBY_URL=f"rtsp://admin:{PASSWORD}@127.0.0.1:1/stream",
        DOCK_URL=f"srt://admin:{PASSWORD}@127.0.0.1:1/feed",
        RAY_TMPDIR=str(ray_tmp),
        CAMERAFLEET_SERVE_PORT=str(free_port()),
    )
    try:
        started = time.monotonic()
        returncode, output = run_in_its_own_process(
            [
                sys.executable,
                "-m",
                "camerafleet.cli",
                "run",
                str(manifest),
                "--duration",
                "8",
                "--progress-interval",
                "2",
                "--drain-timeout",
                "180",  # ends when the consumer has caught up; generous for a machine whose cores are busy
                "--summary",
                str(summary_path),
            ],
            env,
            tmp_path,
            timeout_s=480,
        )
        took = time.monotonic() - started
        # Searched first, so a leak is reported even when the run itself went wrong.
        sessions = [s for s in (ray_tmp / "ray").glob("session_*") if not s.is_symlink()]  # not session_latest
        ray_files = sum(1 for s in sessions for p in s.rglob("*") if p.is_file())
        leaks = {}
        needles = {"secret": PASSWORD, "inline": inline_password, "sasl": SASL_PASSWORD, "s3 key": https_minio.secret_key}
        for name, password in ((n, v.encode()) for n, v in needles.items()):
            found = [f"ray:{p}" for s in sessions for p in files_containing(s, password)]
            found += [f"runs:{p}" for p in files_containing(tmp_path / "runs", password)]  # results.jsonl, summary.json
            if password in output:
                found.append("output")
            if summary_path.exists() and password in summary_path.read_bytes():
                found.append("summary.json")
            leaks[name] = found
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        cams = summary["per_camera"] if summary else {}
        down = {c: cams.get(c, {}).get("last_error") for c in ("lobby", "dock", "gate")}
        row.happened = (
            f"run took {took:.0f} s (exit {returncode}); searched the output ({len(output)} bytes), {ray_files} files "
            f"of {len(sessions)} Ray session(s), the run directory and the summary: secret found in {leaks['secret'] or 'nothing'}, "
            f"inline password in {leaks['inline'] or 'nothing'}, SASL password in {leaks['sasl'] or 'nothing'}, "
            f"S3 key in {leaks['s3 key'] or 'nothing'}; "
            + (
                "; ".join(f"{c}: up={cams[c].get('source_up')} error={e!r}" for c, e in down.items())
                + f"; yard processed {cams['yard'].get('processed')}"
                if summary
                else "no summary was written"
            )
        )
        if summary:
            fault_report.ledger(row, summary)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert sessions and ray_files > 10, "the Ray session logs were not where the test looked"
    assert leaks == {"secret": [], "inline": [], "sasl": [], "s3 key": []}
    assert returncode == 0 and summary is not None, output.decode(errors="replace")[-4000:]
    for cam, error in down.items():
        assert cams[cam]["source_up"] is False and error, (cam, cams[cam])
    assert "'lobby-entrance'" in down["lobby"] and "'loading-dock'" in down["dock"] and "'rtsp://***@127.0.0.1:1/gate'" in down["gate"]
    assert cams["yard"]["processed"] > 0 and summary["ledger_balanced"], summary
    assert list(https_minio.client().list_objects("secure-frames", prefix="secrets/yard/", recursive=True)), "frames over HTTPS"
