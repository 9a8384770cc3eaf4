"""How every Kafka client of CameraFleet connects: plain text for local runs, TLS and SASL (SCRAM or PLAIN)
for the managed Kafka services that require them. Read from the environment, like the S3 credentials:
on Kubernetes the fleet's Pods get it from a Secret named in `spec.kubernetes.envFromSecrets`, the
operator from its chart's `extraEnv`.

The variables are `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`,
`KAFKA_SASL_PASSWORD` and `KAFKA_SSL_CA_FILE` (see `api/settings.py`).
"""

from __future__ import annotations

import ssl
from typing import Any

from camerafleet.api.settings import Settings


def client_options(settings: Settings | None = None) -> dict[str, Any]:
    """The aiokafka keyword arguments every producer, consumer and admin client is made with."""
    s = settings or Settings.from_env()
    options: dict[str, Any] = {"security_protocol": s.kafka_security_protocol}
    if s.kafka_security_protocol in ("SSL", "SASL_SSL"):
        # The system's CAs and a private one: brokers' names are checked either way.
        options["ssl_context"] = ssl.create_default_context(cafile=str(s.kafka_ca_file) if s.kafka_ca_file else None)
    if s.kafka_security_protocol.startswith("SASL_"):
        assert s.kafka_sasl_password is not None  # Settings refuses SASL without it
        options.update(
            sasl_mechanism=s.kafka_sasl_mechanism,
            sasl_plain_username=s.kafka_sasl_username,
            sasl_plain_password=s.kafka_sasl_password.get_secret_value(),
        )
    return options
