"""Safe JPEG decoding: frames come from a shared bucket, so their bytes are untrusted input.

The header is read before decoding so an image claiming huge dimensions (a decompression bomb) is
refused without allocating it, and a corrupt or truncated file becomes a failure with a reason.

Decoding is libjpeg-turbo's through `simplejpeg`, which can also decode straight to 1/2, 1/4 or 1/8 of
the size (DCT scaling: the inverse transform of each 8x8 block produces 4x4, 2x2 or 1x1 pixels). When
every model shrinks the frame anyway, decoding at the smallest of those sizes that still covers them
skips most of the inverse DCT, colour conversion and memory traffic of a full-size decode, and the
resize after it has less to shrink. The other DCT scales (3/8, 5/8, ...) are not used: libjpeg-turbo
implements them with slower generic transforms, and they cost more than a full-size decode.
"""

from __future__ import annotations

import numpy as np
import simplejpeg

from camerafleet.api.outcomes import Reason

MAX_PIXELS = 8192 * 8192
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
SCALE_DIVISORS = (8, 4, 2)
"""The DCT scales used (1/8, 1/4, 1/2), smallest image first; the fast ones in libjpeg-turbo."""


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


def scaled_size(width: int, height: int, divisor: int) -> tuple[int, int]:
    """(width, height) of a width x height JPEG decoded at 1/divisor: libjpeg rounds up."""
    return -(-width // divisor), -(-height // divisor)


def scale_divisor(width: int, height: int, cover: tuple[int, int] | None) -> int:
    """The largest reduction (8, 4, 2 or 1 for full size) at which a width x height JPEG still decodes to
    at least `cover` = (width, height) in both dimensions; 1 when `cover` is None (full size wanted)."""
    if cover is None:
        return 1
    for divisor in SCALE_DIVISORS:
        scaled_w, scaled_h = scaled_size(width, height, divisor)
        if scaled_w >= cover[0] and scaled_h >= cover[1]:
            return divisor
    return 1


def check_jpeg(data: bytes, max_pixels: int = MAX_PIXELS, expected_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(width, height) of a JPEG whose header is fit to decode, from the header alone; ImageError(decode_error |
    image_too_large | size_mismatch) otherwise. A corrupt image body is found only by decoding it."""
    width, height = jpeg_dimensions(data)
    if expected_size is not None and (width, height) != tuple(expected_size):
        raise ImageError(
            Reason.SIZE_MISMATCH, f"JPEG is {width}x{height} but its frame message announces {expected_size[0]}x{expected_size[1]}"
        )
    if width == 0 or height == 0:
        raise ImageError(Reason.DECODE_ERROR, f"JPEG header declares an empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(Reason.IMAGE_TOO_LARGE, f"JPEG declares {width}x{height} pixels, more than the limit of {max_pixels}")
    return width, height


def decode_jpeg(
    data: bytes,
    max_pixels: int = MAX_PIXELS,
    expected_size: tuple[int, int] | None = None,
    cover: tuple[int, int] | None = None,
) -> np.ndarray:
    """BGR uint8 image; ImageError(decode_error | image_too_large | size_mismatch) otherwise. With
    `expected_size` (width, height announced for the frame), a JPEG of another size is refused before
    decoding: a tiny uniform JPEG can otherwise declare, and decode to, hundreds of megabytes.

    With `cover` = (width, height), the image is decoded at the smallest DCT scale (1/8, 1/4, 1/2) whose
    output is still at least that large in both dimensions, at full size when none is: the caller maps
    results back with the ratio of the header's size to the returned image's."""
    width, height = check_jpeg(data, max_pixels, expected_size)
    divisor = scale_divisor(width, height, cover)
    out_w, out_h = scaled_size(width, height, divisor)
    try:
        # min_factor rules out the scales between full size and 1/divisor (5/8, 3/4, ...), min_width/height
        # the smaller ones: exactly 1/divisor is left. strict: a truncated file is an error, not a grey tail.
        image = simplejpeg.decode_jpeg(data, colorspace="BGR", min_width=out_w, min_height=out_h, min_factor=divisor, strict=True)
    except ValueError as err:  # libjpeg-turbo's errors (corrupt data, premature end, unsupported colour space)
        raise ImageError(Reason.DECODE_ERROR, f"JPEG of {width}x{height} could not be decoded: {err}") from None
    if image.shape != (out_h, out_w, 3):  # the header read above and libjpeg-turbo's disagree: a crafted file
        raise ImageError(Reason.DECODE_ERROR, f"JPEG header says {width}x{height} but it decoded to {image.shape[1]}x{image.shape[0]}")
    return image
