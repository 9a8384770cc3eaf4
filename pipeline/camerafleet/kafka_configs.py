"""Topic configs set one key at a time (Kafka's IncrementalAlterConfigs, KIP-339, API key 44).

The legacy AlterConfigs, the only one aiokafka's admin client sends, replaces a topic's whole dynamic
config: setting our retention wiped what an administrator had set on the same topic
(`min.insync.replicas`, `max.message.bytes`, ...). aiokafka has no request for KIP-339, so its version 0
is declared here with aiokafka's own protocol types and sent through the admin client's connection
(brokers 2.3 and later answer it).
"""

from __future__ import annotations

from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResourceType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

SET = 0  # the operation of each config entry: SET, DELETE, APPEND, SUBTRACT


class IncrementalAlterConfigsResponse_v0(Response):
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "responses",
            Array(("error_code", Int16), ("error_message", String("utf-8")), ("resource_type", Int8), ("resource_name", String("utf-8"))),
        ),
    )


class IncrementalAlterConfigsRequest_v0(RequestStruct):
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        (
            "resources",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                ("configs", Array(("name", String("utf-8")), ("config_operation", Int8), ("value", String("utf-8")))),
            ),
        ),
        ("validate_only", Boolean),
    )


class IncrementalAlterConfigs(Request[IncrementalAlterConfigsRequest_v0]):
    API_KEY = 44

    def __init__(self, resources: list[tuple[int, str, list[tuple[str, int, str]]]]):
        self._resources = resources

    def build(self, request_struct_class: type[IncrementalAlterConfigsRequest_v0]) -> IncrementalAlterConfigsRequest_v0:
        return request_struct_class(self._resources, False)


class ConfigRefused(RuntimeError):
    """The broker refused a config; the message names the topic and the broker's reason."""


async def set_topic_configs(admin: AIOKafkaAdminClient, changes: dict[str, dict[str, str]]) -> None:
    """Set these keys of these topics, leaving every other key of theirs as it is."""
    if not changes:
        return
    resources = [
        (ConfigResourceType.TOPIC.value, topic, [(key, SET, value) for key, value in sorted(configs.items())])
        for topic, configs in sorted(changes.items())
    ]
    response: Any = await admin._send_request(IncrementalAlterConfigs(resources))
    refused = [f"{name}: {message or f'error code {code}'}" for code, message, _, name in response.responses if code != 0]
    if refused:
        raise ConfigRefused("Kafka refused topic configs: " + "; ".join(refused))
