"""The pipeline end to end over the transports managed services require (issue 24): Kafka over TLS with
SASL/SCRAM-SHA-512, the bucket on MinIO over HTTPS, both with certificates from a private CA, and every
credential from the environment (a Secret on Kubernetes).

The brokers here are the tests' own: a Kafka with a SASL_SSL listener and a MinIO with a certificate,
each made for this module. `camerafleet run` runs as a user runs it, in a process (and a Ray) of its own,
so that what it is given reaches every actor the way a Pod's environment does.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from camerafleet.api.settings import Settings, SettingsError
from camerafleet.kafka_access import client_options
from camerafleet_dev.devservers._process import free_port
from camerafleet_dev.devservers.kafka import KafkaServer
from camerafleet_dev.devservers.minio import MinioServer
from tests.fixtures.pipeline import health_model, run_in_its_own_process, write_fleet

pytestmark = pytest.mark.integration
USER, PASSWORD = "fleet-a", "scram-password-of-fleet-a"
RUN_TIMEOUT_S = 480  # a run of a few seconds with its own Ray: ~1 minute here, minutes on a loaded machine


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory) -> Iterator[KafkaServer]:
    with KafkaServer(tmp_path_factory.mktemp("kafka-sasl-ssl"), scram_users={USER: PASSWORD}) as kafka:
        yield kafka


@pytest.fixture(scope="module")
def https_minio(tmp_path_factory) -> Iterator[MinioServer]:
    with MinioServer(tmp_path_factory.mktemp("minio-https"), https=True) as minio:
        yield minio


def secure_env(kafka: KafkaServer, minio: MinioServer, password: str = PASSWORD) -> dict[str, str]:
    assert kafka.tls is not None and minio.tls is not None
    return {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": password,
        "KAFKA_SSL_CA_FILE": str(kafka.tls.ca),
        "CAMERAFLEET_S3_CA_FILE": str(minio.tls.ca),
        "AWS_ACCESS_KEY_ID": minio.access_key,
        "AWS_SECRET_ACCESS_KEY": minio.secret_key,
    }


def test_a_client_without_the_password_or_without_the_ca_is_refused(secure_kafka, https_minio):
    async def connects(env: dict[str, str]) -> bool:
        producer = AIOKafkaProducer(
            bootstrap_servers=secure_kafka.secure_bootstrap, request_timeout_ms=10_000, **client_options(Settings.from_env(env))
        )
        try:
            await producer.start()
            return True
        except KafkaError:
            return False
        finally:
            await producer.stop()

    assert asyncio.run(connects(secure_env(secure_kafka, https_minio))), "the fleet's credentials and CA open the listener"
    assert not asyncio.run(connects(secure_env(secure_kafka, https_minio, password="not-the-password")))
    assert not asyncio.run(connects({**secure_env(secure_kafka, https_minio), "KAFKA_SSL_CA_FILE": ""})), (
        "the broker's CA is not a system CA"
    )
    with pytest.raises(SettingsError, match="KAFKA_SASL_PASSWORD"):
        Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": USER})


def test_the_pipeline_runs_end_to_end_over_sasl_ssl_kafka_and_an_https_bucket(secure_kafka, https_minio, tmp_path):
    manifest = write_fleet(
        tmp_path / "fleet.yaml",
        "secure",
        secure_kafka.secure_bootstrap,
        cameras=[{"id": "door", "source": "synthetic:320x240@10", "inferenceFps": 2}],
        models=[health_model()],
        bucket={"uri": "s3://secure-frames/fleet", "endpoint": https_minio.endpoint},
        producer={"actors": 1, "cpusPerActor": 0.25},
        consumer={"actors": 1, "cpusPerActor": 0.25, "maxFrameAgeMs": 60000},
    )
    ray_tmp = Path(tempfile.mkdtemp(prefix="cftls-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    summary_path = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "KAFKA_BOOTSTRAP") and not k.startswith("AWS_")}
    env.update(secure_env(secure_kafka, https_minio), RAY_TMPDIR=str(ray_tmp), CAMERAFLEET_SERVE_PORT=str(free_port()))
    argv = [sys.executable, "-m", "camerafleet.cli", "run", str(manifest), "--duration", "8", "--drain-timeout", "180"]
    try:
        returncode, output = run_in_its_own_process([*argv, "--summary", str(summary_path)], env, tmp_path, RUN_TIMEOUT_S)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    text = output.decode(errors="replace")
    assert returncode == 0, text[-4000:]
    assert PASSWORD not in text, "the SASL password is never printed"
    summary = json.loads(summary_path.read_text())
    door = summary["per_camera"]["door"]
    assert door["processed"] > 0 and summary["ledger_balanced"], (door, text[-2000:])
    stored = list(https_minio.client().list_objects("secure-frames", prefix="fleet/door/", recursive=True))
    assert stored, "frames went to the bucket over HTTPS"
