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
