"""Reading the user's images as the models expect them: 8-bit RGB."""
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from baselines.cli import UserError

WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}
"""PIL modes of 16-bit grayscale images (PNG, TIFF) and the value of white in them. PIL's ``convert("RGB")``
clips these at 255 instead of scaling them, which turns most of a 16-bit image white."""


def to_rgb(image):
    """An 8-bit RGB copy of a PIL image; 16-bit grayscale is scaled to 0..255 (``round(v * 255 / white)``)."""
    white = WIDE_MODES.get(image.mode)
    if white is not None:
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.round(values * 255 / white), 0, 255).astype(np.uint8), "L")
    return image.convert("RGB")


def read_images(paths, prepare):
    """``prepare`` (PIL RGB image -> tensor) applied to each image file, stacked; an unreadable file, or one over
    PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS`` x 2, 179 Mpx by default), is one line."""
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                images.append(prepare(to_rgb(image)))
        except (OSError, UnidentifiedImageError) as error:
            raise UserError(f"cannot read image {path}: {error.__class__.__name__}") from None
        except Image.DecompressionBombError as error:
            raise UserError(f"cannot read image {path}: {error}") from None
    return torch.stack(images)
