"""The dev servers are real and behave like production: Kafka and MinIO, started, restarted, detached.

Everything else in the integration suite relies on these fixtures and on ``restart()`` keeping data and
addresses (fault-injection tests stop the broker and bring it back), so this checks exactly that, plus
the product-relevant broker settings (no topic auto-creation) and the CLI used by ``make demo``.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from minio import Minio

from camerafleet_dev.devservers._process import ServerStartError, pid_alive
from camerafleet_dev.devservers.kafka import KafkaServer, broker_answers
from camerafleet_dev.devservers.minio import MinioServer

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int, group_id: str | None = None, timeout_s: float = 30.0) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group_id, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    received: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(received) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"got {len(received)} of {count} messages from {topic} in {timeout_s} s")
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                received.extend(record.value for record in records)
    finally:
        await consumer.stop()
    return received


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- Kafka ---------------------------------------------------------------------------------------


def test_kafka_produce_and_consume(kafka_server: KafkaServer) -> None:
    assert kafka_server.is_running()
    assert kafka_server.bootstrap == f"127.0.0.1:{kafka_server.broker_port}"
    topic = unique("devservers")
    values = [b"frame-1", b"frame-2", b"frame-3"]

    async def scenario() -> list[bytes]:
        await create_topic(kafka_server.bootstrap, topic, partitions=1)
        await produce(kafka_server.bootstrap, topic, values)
        # With a consumer group, so the broker's group coordinator is exercised too.
        return await consume(kafka_server.bootstrap, topic, len(values), group_id=unique("group"))

    assert asyncio.run(scenario()) == values


def test_kafka_does_not_auto_create_topics(kafka_server: KafkaServer) -> None:
    missing = unique("never-created")

    async def scenario() -> list[str]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_server.bootstrap, request_timeout_ms=3000)
        await producer.start()
        try:
            with pytest.raises(KafkaError):
                await producer.send_and_wait(missing, b"lost")
        finally:
            await producer.stop()
        return await list_topics(kafka_server.bootstrap)

    assert missing not in asyncio.run(scenario())


def test_kafka_stop_start_and_restart_keep_address_and_data(kafka_server: KafkaServer) -> None:
    topic = unique("durable")
    bootstrap = kafka_server.bootstrap
    asyncio.run(create_topic(bootstrap, topic))
    asyncio.run(produce(bootstrap, topic, [b"before-stop"]))

    # What fault-injection tests do: take the broker away, then bring it back on the same address.
    kafka_server.stop()
    assert not kafka_server.is_running()
    assert not port_open(kafka_server.broker_port)
    kafka_server.start()
    assert kafka_server.is_running()
    assert kafka_server.bootstrap == bootstrap
    assert asyncio.run(consume(bootstrap, topic, 1)) == [b"before-stop"]

    asyncio.run(produce(bootstrap, topic, [b"before-restart"]))
    kafka_server.restart()
    assert kafka_server.bootstrap == bootstrap
    assert asyncio.run(consume(bootstrap, topic, 2)) == [b"before-stop", b"before-restart"]


def test_kafka_survives_a_crash(kafka_server: KafkaServer) -> None:
    topic = unique("crash")
    asyncio.run(create_topic(kafka_server.bootstrap, topic))
    asyncio.run(produce(kafka_server.bootstrap, topic, [b"acked-before-crash"]))

    kafka_server.kill()  # SIGKILL: no clean shutdown, the broker recovers its log on start
    assert not kafka_server.is_running()
    kafka_server.start()

    assert asyncio.run(consume(kafka_server.bootstrap, topic, 1)) == [b"acked-before-crash"]


def test_kafka_broker_logs_go_to_its_data_dir(kafka_server: KafkaServer) -> None:
    assert kafka_server.log_path.is_relative_to(kafka_server.data_dir)
    assert "Kafka Server started" in kafka_server.log_path.read_text()


# -- MinIO ---------------------------------------------------------------------------------------


def test_minio_put_and_get(minio_server: MinioServer) -> None:
    assert minio_server.endpoint == f"http://127.0.0.1:{minio_server.port}"
    client = Minio(minio_server.host, access_key=minio_server.access_key, secret_key=minio_server.secret_key, secure=False)
    bucket = unique("frames")
    client.make_bucket(bucket)
    payload = os.urandom(256 * 1024)
    client.put_object(bucket, "cam-1/000001.jpg", io.BytesIO(payload), len(payload), content_type="image/jpeg")
    response = client.get_object(bucket, "cam-1/000001.jpg")
    try:
        assert response.read() == payload
    finally:
        response.close()
        response.release_conn()
    assert client.stat_object(bucket, "cam-1/000001.jpg").size == len(payload)


def test_minio_restart_keeps_objects(minio_server: MinioServer) -> None:
    client = minio_server.client()
    bucket = unique("durable")
    client.make_bucket(bucket)
    client.put_object(bucket, "clip.bin", io.BytesIO(b"still here"), 10)
    endpoint = minio_server.endpoint

    minio_server.restart()

    assert minio_server.endpoint == endpoint
    response = minio_server.client().get_object(bucket, "clip.bin")
    try:
        assert response.read() == b"still here"
    finally:
        response.close()
        response.release_conn()


def test_minio_secret_is_not_logged_or_shown(minio_server: MinioServer) -> None:
    assert minio_server.secret_key not in minio_server.log_path.read_text()
    assert minio_server.secret_key not in repr(minio_server)


def test_minio_start_failure_is_explained(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = MinioServer(tmp_path / "minio", port=taken.getsockname()[1], startup_timeout_s=30)
        with pytest.raises(ServerStartError) as failure:
            server.start()
    assert not server.is_running()
    assert "last lines of" in str(failure.value)
    assert server.secret_key not in str(failure.value)


# -- CLI used by `make demo` ---------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camerafleet_dev.devservers", *args], check=False, capture_output=True, text=True, timeout=300
    )


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_cli_starts_detached_kafka_and_stops_it(tmp_path: Path) -> None:
    pid_file, env_file = tmp_path / "kafka.pid", tmp_path / "kafka.env"
    started = run_cli("kafka", "--data-dir", str(tmp_path / "kafka"), "--pid-file", str(pid_file), "--env-file", str(env_file))
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    try:
        assert started.returncode == 0, started.stderr
        bootstrap = read_env_file(env_file)["KAFKA_BOOTSTRAP"]
        assert started.stdout.strip() == f"KAFKA_BOOTSTRAP={bootstrap}"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert pid is not None and pid_alive(pid)  # it outlived the CLI process
        assert broker_answers(bootstrap)
        again = run_cli("kafka", "--data-dir", str(tmp_path / "kafka"), "--pid-file", str(pid_file), "--env-file", str(env_file))
        assert again.returncode == 0 and again.stdout == started.stdout, again.stderr
    finally:
        stopped = run_cli("kafka", "--stop", "--pid-file", str(pid_file))
    assert stopped.returncode == 0, stopped.stderr
    assert pid is not None and not pid_alive(pid)
    assert not pid_file.exists()


def test_cli_starts_detached_minio_without_printing_the_secret(tmp_path: Path) -> None:
    pid_file, env_file = tmp_path / "minio.pid", tmp_path / "minio.env"
    started = run_cli("minio", "--data-dir", str(tmp_path / "minio"), "--pid-file", str(pid_file), "--env-file", str(env_file))
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    try:
        assert started.returncode == 0, started.stderr
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        settings = read_env_file(env_file)
        secret = settings["AWS_SECRET_ACCESS_KEY"]
        assert secret not in started.stdout and secret not in started.stderr
        assert f"CAMERAFLEET_S3_ENDPOINT={settings['CAMERAFLEET_S3_ENDPOINT']}" in started.stdout
        client = Minio(
            settings["CAMERAFLEET_S3_ENDPOINT"].removeprefix("http://"),
            access_key=settings["AWS_ACCESS_KEY_ID"],
            secret_key=secret,
            secure=False,
        )
        client.make_bucket("cli-bucket")
        assert client.bucket_exists("cli-bucket")
    finally:
        stopped = run_cli("minio", "--stop", "--pid-file", str(pid_file), "--env-file", str(env_file))
    assert stopped.returncode == 0, stopped.stderr
    assert pid is not None and not pid_alive(pid)
    assert not env_file.exists()
