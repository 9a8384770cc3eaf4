"""Kafka over TLS with SASL/SCRAM-SHA-512 (issue 24): the fleet's clients connect with the credentials and
the private CA given in their environment, and without either they are refused. The whole pipeline over
this broker and MinIO over HTTPS runs in `tests/faults/test_secrets.py`, which also checks that neither
the SASL password nor the S3 key reaches any log."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from camerafleet.api.settings import Settings, SettingsError
from camerafleet.kafka_access import client_options
from tests.fixtures.servers import SASL_USER, secure_env

pytestmark = pytest.mark.integration


def test_a_client_without_the_password_or_without_the_ca_is_refused(secure_kafka, https_minio):
    async def connects(env: dict[str, str]) -> bool:
        options = client_options(Settings.from_env(env))
        producer = AIOKafkaProducer(bootstrap_servers=secure_kafka.secure_bootstrap, request_timeout_ms=10_000, **options)
        try:
            await producer.start()
            return True
        except KafkaError:
            return False
        finally:
            await producer.stop()

    env = secure_env(secure_kafka, https_minio)
    assert asyncio.run(connects(env)), "the fleet's credentials and CA open the listener"
    assert not asyncio.run(connects(secure_env(secure_kafka, https_minio, password="not-the-password")))
    assert not asyncio.run(connects({**env, "KAFKA_SSL_CA_FILE": ""})), "the broker's CA is not a system CA"
    with pytest.raises(SettingsError, match="KAFKA_SASL_PASSWORD"):
        Settings.from_env(
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": SASL_USER}
        )
