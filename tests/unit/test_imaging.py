"""Frame bytes are untrusted: corrupt, truncated and bomb JPEGs fail with a reason, before decoding."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camerafleet.imaging import ImageError, decode_jpeg, jpeg_dimensions


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_valid(jpeg):
    assert jpeg_dimensions(jpeg) == (160, 90)
    assert decode_jpeg(jpeg).shape == (90, 160, 3)


def test_random_bytes():
    with pytest.raises(ImageError) as info:
        decode_jpeg(b"\x00garbage" * 100)
    assert info.value.reason == "decode_error"


def test_truncated(jpeg):
    with pytest.raises(ImageError) as info:
        decode_jpeg(jpeg[:10])
    assert info.value.reason == "decode_error"


def test_decompression_bomb_is_refused_from_its_header(jpeg):
    i = jpeg.index(b"\xff\xc0")
    bomb = jpeg[: i + 5] + (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big") + jpeg[i + 9 :]
    with pytest.raises(ImageError) as info:
        decode_jpeg(bomb)
    assert info.value.reason == "image_too_large"
    assert "60000x60000" in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_fail_cleanly(data):
    try:
        decode_jpeg(data)
    except ImageError as err:
        assert err.reason in {"decode_error", "image_too_large"}


# -- hostile frames, for the fault-injection report ----------------------------------------------------------


def _with_header(jpeg: bytes, width: int, height: int, marker: bytes = b"\xff\xc0") -> bytes:
    i = jpeg.index(b"\xff\xc0")
    return jpeg[:i] + marker + jpeg[i + 2 : i + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[i + 9 :]


@pytest.mark.faults
@pytest.mark.parametrize(
    "what, width, height, marker, reason",
    [
        ("baseline JPEG header claiming 65535x65535 (4.3 G pixels, 12.9 GB decoded)", 65535, 65535, b"\xff\xc0", "image_too_large"),
        ("progressive JPEG (SOF2) header claiming 60000x60000", 60000, 60000, b"\xff\xc2", "image_too_large"),
        ("JPEG header one row over the limit (8192x8193)", 8192, 8193, b"\xff\xc0", "image_too_large"),
        ("JPEG header claiming a 0x480 image", 0, 480, b"\xff\xc0", "decode_error"),
    ],
)
def test_hostile_jpeg_headers_are_refused_before_decoding(fault_report, monkeypatch, jpeg, what, width, height, marker, reason):
    row = fault_report.row(what, f"refused from its header with reason {reason}, the decoder never called")
    decoder_calls = []
    monkeypatch.setattr("camerafleet.imaging.cv2.imdecode", lambda *a: decoder_calls.append(a))
    with pytest.raises(ImageError) as info:
        decode_jpeg(_with_header(jpeg, width, height, marker))
    row.happened = f"ImageError {info.value.reason}: {info.value}; decoder called {len(decoder_calls)} time(s)"
    assert info.value.reason == reason and not decoder_calls


def test_a_jpeg_of_another_size_than_announced_is_refused_before_decoding():
    jpeg = cv2.imencode(".jpg", np.zeros((24, 32, 3), np.uint8))[1].tobytes()
    assert decode_jpeg(jpeg, expected_size=(32, 24)).shape == (24, 32, 3)
    with pytest.raises(ImageError) as err:
        decode_jpeg(jpeg, expected_size=(1280, 720))
    assert err.value.reason == "size_mismatch" and "32x24" in str(err.value) and "1280x720" in str(err.value)
