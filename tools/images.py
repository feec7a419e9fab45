"""Images a person gives the studio: checked by what they are, not by what they are called.

An upload is only accepted when Pillow decodes it as one of the formats ComfyUI's LoadImage
reads (PNG, JPEG, WebP), within a size and a pixel limit: a zip renamed ``.png``, a text file
or a decompression bomb is refused with a message that says which rule it broke. The
dimensions are read from the header first (cheap) and the pixels are then decoded once, so a
truncated file is refused here instead of failing later inside ComfyUI.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from creative_studio.core.errors import InvalidInputError

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "ImageInfo",
    "TooLargeImageError",
    "inspect_image",
]

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # a phone photo fits; an upload is kept under the session
MAX_IMAGE_SIDE = 8192  # ComfyUI's own size bound (MAX_RESOLUTION) for every image node
MAX_IMAGE_PIXELS = 40_000_000  # ~ 8000x5000: more only burns memory in VAEEncode
_FORMATS = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
}


class TooLargeImageError(InvalidInputError):
    status_code = 413
    code = "image_too_large"


@dataclass(frozen=True)
class ImageInfo:
    content_type: str
    extension: str
    width: int
    height: int
    size: int
    sha256: str

    @property
    def stored_name(self) -> str:
        """The file name it is stored under: the same image twice is one file (128 bits of
        its sha256 are plenty to tell a session's images apart)."""
        return f"{self.sha256[:32]}.{self.extension}"


def inspect_image(data: bytes, *, max_bytes: int = MAX_IMAGE_BYTES) -> ImageInfo:
    """What the bytes really are; raises InvalidInputError (or TooLargeImageError) if refused."""
    if not data:
        raise InvalidInputError("The file is empty: send a PNG, JPEG or WebP image.")
    if len(data) > max_bytes:
        raise TooLargeImageError(
            f"The image is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind = image.format or ""
                width, height = image.size
                if kind not in _FORMATS:
                    raise InvalidInputError(
                        f"{kind or 'This'} images are not supported: send a PNG, JPEG or WebP image."
                    )
                _check_dimensions(width, height)
                image.load()  # a truncated or corrupt file fails here, not in ComfyUI
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLargeImageError(
            f"The image has too many pixels; the limit is {MAX_IMAGE_PIXELS // 1_000_000} "
            "megapixels."
        ) from None
    except UnidentifiedImageError:
        raise InvalidInputError(
            "The file is not an image (its content is not PNG, JPEG or WebP, whatever its name "
            "says)."
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InvalidInputError(f"The image could not be decoded: {error}.") from None
    content_type, extension = _FORMATS[kind]
    return ImageInfo(
        content_type, extension, width, height, len(data), hashlib.sha256(data).hexdigest()
    )


def _check_dimensions(width: int, height: int) -> None:
    if width < 8 or height < 8:
        raise InvalidInputError(f"The image is {width}x{height}: at least 8x8 pixels, please.")
    if max(width, height) > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise TooLargeImageError(
            f"The image is {width}x{height}; the limit is {MAX_IMAGE_SIDE} pixels a side and "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels."
        )
