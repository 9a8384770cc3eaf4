"""Safe JPEG decoding: frames come from a shared bucket, so their bytes are untrusted input.

The header is read before decoding so an image claiming huge dimensions (a decompression bomb) is
refused without allocating it, and a corrupt or truncated file becomes a failure with a reason.
"""

from __future__ import annotations

import cv2
import numpy as np

from camerafleet.api.outcomes import Reason

MAX_PIXELS = 8192 * 8192
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageError(ValueError):
    """A frame that cannot be decoded; `reason` is what the ledger counts."""

    def __init__(self, reason: Reason, message: str):
        super().__init__(message)
        self.reason = reason


def jpeg_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG's frame header, without decoding the image."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise ImageError(Reason.DECODE_ERROR, "not a JPEG (no start-of-image marker)")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ImageError(Reason.DECODE_ERROR, f"corrupt JPEG: expected a marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF_MARKERS:
            if i + 9 > len(data):
                break
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        if length < 2:
            raise ImageError(Reason.DECODE_ERROR, "corrupt JPEG: bad segment length")
        i += 2 + length
    raise ImageError(Reason.DECODE_ERROR, "truncated JPEG: no frame header")


def decode_jpeg(data: bytes, max_pixels: int = MAX_PIXELS, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """BGR uint8 image; ImageError(decode_error | image_too_large | size_mismatch) otherwise. With
    `expected_size` (width, height announced for the frame), a JPEG of another size is refused before
    decoding: a tiny uniform JPEG can otherwise declare, and decode to, hundreds of megabytes."""
    width, height = jpeg_dimensions(data)
    if expected_size is not None and (width, height) != tuple(expected_size):
        raise ImageError(
            Reason.SIZE_MISMATCH, f"JPEG is {width}x{height} but its frame message announces {expected_size[0]}x{expected_size[1]}"
        )
    if width == 0 or height == 0:
        raise ImageError(Reason.DECODE_ERROR, f"JPEG header declares an empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(Reason.IMAGE_TOO_LARGE, f"JPEG declares {width}x{height} pixels, more than the limit of {max_pixels}")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(Reason.DECODE_ERROR, f"JPEG of {width}x{height} could not be decoded (corrupt or truncated)")
    return image
