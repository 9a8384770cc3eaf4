"""Frame bytes are untrusted: corrupt, truncated and bomb JPEGs fail with a reason, before decoding."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camerafleet.imaging import ImageError, decode_jpeg, jpeg_dimensions, scale_divisor


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
    monkeypatch.setattr("camerafleet.imaging.simplejpeg.decode_jpeg", lambda *a, **kw: decoder_calls.append(a))
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


# -- decoding at the models' scale ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, cover, divisor",
    [
        ((1280, 720), None, 1),  # no cover: full size
        ((1280, 720), (640, 384), 1),  # CenterFace 640x384: 1/2 is 640x360, too short, so full size
        ((1280, 720), (640, 360), 2),  # exactly half covers
        ((1280, 720), (320, 180), 4),  # camera health: a quarter
        ((1280, 720), (160, 90), 8),
        ((1280, 720), (100, 10), 8),  # never below 1/8
        ((1280, 720), (1280, 720), 1),
        ((1280, 720), (2000, 2000), 1),  # larger than the frame: full size, never upscaled
        ((1281, 721), (641, 361), 2),  # libjpeg rounds up: 1281/2 -> 641
        ((1920, 1080), (640, 360), 2),  # 960x540 at 1/2 covers; 1/4 (480x270) does not
    ],
)
def test_scale_choice_is_the_smallest_image_that_covers(size, cover, divisor):
    assert scale_divisor(*size, cover) == divisor


def test_scaled_decode_sizes_and_content():
    rng = np.random.default_rng(1)
    image = cv2.resize(rng.integers(0, 255, (18, 32, 3), dtype=np.uint8), (321, 181), interpolation=cv2.INTER_CUBIC)
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    full = decode_jpeg(jpeg)
    assert decode_jpeg(jpeg, cover=(161, 91)).shape == (91, 161, 3)
    assert decode_jpeg(jpeg, cover=(80, 45)).shape == (46, 81, 3)
    eighth = decode_jpeg(jpeg, cover=(1, 1))
    assert eighth.shape == (23, 41, 3)
    # A DCT-scaled decode is the full image averaged over 8x8 blocks, up to JPEG rounding.
    blocks = full[:176, :320].reshape(22, 8, 40, 8, 3).mean(axis=(1, 3))
    assert np.abs(eighth[:22, :40] - blocks).mean() < 4


def test_guards_hold_for_scaled_decodes(jpeg):
    i = jpeg.index(b"\xff\xc0")
    bomb = jpeg[: i + 5] + (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big") + jpeg[i + 9 :]
    with pytest.raises(ImageError) as info:
        decode_jpeg(bomb, cover=(10, 10))
    assert info.value.reason == "image_too_large"
    with pytest.raises(ImageError) as info:
        decode_jpeg(jpeg, expected_size=(320, 180), cover=(10, 10))
    assert info.value.reason == "size_mismatch"
    with pytest.raises(ImageError) as info:
        decode_jpeg(jpeg[: len(jpeg) // 2], cover=(20, 12))
    assert info.value.reason == "decode_error" and "160x90" in str(info.value)
