"""What a producer does when Kafka does not take an announcement: retry (Kafka down or moving), replace
its client (the client itself is broken), or fail the frame with a reason (Kafka refuses the message)."""

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)

from camerafleet.announcer import on_send_error


@pytest.mark.parametrize(
    "err, action",
    [
        (KafkaConnectionError(), "retry"),
        (KafkaTimeoutError(), "retry"),
        (RequestTimedOutError(), "retry"),
        (NotLeaderForPartitionError(), "retry"),
        (LeaderNotAvailableError(), "retry"),
        (ProducerClosed(), "reset"),
        (OutOfOrderSequenceNumber(), "reset"),
        (KafkaError("Unexpected error during batch delivery"), "reset"),
        (MessageSizeTooLargeError(), "fail"),
        (TopicAuthorizationFailedError(), "fail"),
        (ValueError("a bug"), "fail"),
    ],
)
def test_send_errors_are_sorted(err, action):
    assert on_send_error(err) == action
