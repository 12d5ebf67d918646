"""Reading the user's images as the models expect them: 8-bit RGB."""
import numpy as np
from PIL import Image

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
