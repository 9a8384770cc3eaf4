"""Frame messages off Kafka: anything malformed becomes a MessageError, never another exception."""

import contextlib
import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camerafleet.api.messages import FrameMessage, KafkaPosition, MessageError, ResultRecord, parse_frame_message

GOOD = {"cameraId": "1", "seq": 3, "epochMs": 1, "captureTsMs": 2, "uri": "file:///b/1/x.jpg", "width": 640, "height": 480}


def test_round_trip():
    msg = parse_frame_message(orjson.dumps(GOOD))
    assert parse_frame_message(msg.to_json()) == msg


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"", "empty"),
        (None, "empty"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (orjson.dumps({**GOOD, "seq": "3"}), "seq"),
        (orjson.dumps({**GOOD, "width": -5}), "width"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "uri"}), "uri"),
        (orjson.dumps({**GOOD, "v": 2}), "v"),
    ],
)
def test_malformed(raw, fragment):
    with pytest.raises(MessageError, match=fragment):
        parse_frame_message(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*GOOD, "extra"]), json_values, max_size=9) | json_values)
def test_any_json_parses_or_fails_cleanly(value):
    try:
        msg = parse_frame_message(orjson.dumps(value))
    except MessageError:
        return
    assert isinstance(msg, FrameMessage)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256))
def test_any_bytes_parse_or_fail_cleanly(raw):
    with contextlib.suppress(MessageError):
        parse_frame_message(raw)


# -- hostile messages, for the fault-injection report --------------------------------------------------------

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
field_values = (
    st.none()
    | st.booleans()
    | int64
    | st.floats(allow_nan=False)
    | st.text(max_size=3000)
    | st.lists(int64, max_size=3)
    | st.dictionaries(st.text(max_size=5), int64, max_size=2)
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([k for k in GOOD if k != "v"]), st.sampled_from(["replace", "delete"]), field_values)
def check_one_field_mutated(name, how, value):
    data = dict(GOOD)
    if how == "delete":
        del data[name]
    else:
        data[name] = value
    try:
        msg = parse_frame_message(orjson.dumps(data))
    except MessageError as err:
        assert name in str(err), f"{how} {name}={value!r}: the error does not name the field: {err}"
        return
    assert (
        isinstance(msg, FrameMessage)
        and getattr(msg, {"cameraId": "camera_id", "epochMs": "epoch_ms", "captureTsMs": "capture_ts_ms"}.get(name, name)) == data[name]
    )


@pytest.mark.faults
def test_hostile_frame_messages_fail_cleanly(fault_report):
    row = fault_report.row(
        "hostile frame messages on a camera topic: 300 arbitrary JSON values, 200 arbitrary byte strings, "
        "400 valid messages with one field replaced (any type, 3000-char strings, 64-bit extremes) or deleted",
        "parsed, or MessageError (counted as malformed_message) that names the broken field; never another exception",
    )
    started = time.monotonic()
    test_any_json_parses_or_fails_cleanly()
    test_any_bytes_parse_or_fail_cleanly()
    check_one_field_mutated()
    row.happened = (
        f"900 messages: only FrameMessage or MessageError, every field error named its field ({time.monotonic() - started:.1f} s)"
    )


def test_a_dead_letter_record_keeps_the_start_of_a_message_it_cannot_read_and_its_size():
    """Issue 24: the whole raw message went into the record; a message of a few hundred KB made a record over Kafka's
    limit, the send failed, and the batch was read again forever."""
    at = KafkaPosition(topic="camera_1", partition=0, offset=7)
    raw = bytes(range(256)) * (8 * 1024)  # 2 MiB, not UTF-8
    record = ResultRecord.unreadable("1", at, "not JSON", raw)
    assert record.value_bytes == len(raw) and record.value is not None
    assert len(orjson.dumps(record.to_dict())) < 1024 * 1024
    assert ResultRecord.unreadable("1", at, "empty message value", None).value is None
