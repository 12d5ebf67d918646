"""Synthetic "shapes on photos" images with exact object masks.

Every image is a 224x224 RGB crop of a photo shipped by an installed package, with one class object (a filled,
outlined, solid or textured shape) drawn on top of 1-4 distractors (thin strokes, dots and arcs of any colour that
never decide the class). Each class has its own shape and its own hue band (CLASS_HUES, +-HUE_JITTER); the
object's saturation, brightness, texture, position, size, rotation and outline, the background crop and the
distractors are drawn independently of the label, so only the object itself predicts the class.

Sample ``index`` of a split is a pure function of ``(seed, split, index)``: any subset can be regenerated alone.
"""
import functools
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

IMAGE_SIZE = 224
JPEG_QUALITY = 90
CLASS_NAMES = ("circle", "square", "triangle", "plus", "star", "ring", "crescent", "arrow", "heart", "hourglass")
WNIDS = tuple(f"n{i:08d}" for i in range(len(CLASS_NAMES)))
SPLITS = {"train": 0, "val": 1}
OBJECT_SIZE = (72, 160)
DISTRACTORS = (1, 4)
CLASS_HUES = tuple(256 * k / len(CLASS_NAMES) for k in range(len(CLASS_NAMES)))
HUE_JITTER = 6

BACKGROUNDS = (
    ("skimage", "astronaut"), ("skimage", "chelsea"), ("skimage", "coffee"), ("skimage", "rocket"),
    ("skimage", "hubble_deep_field"), ("skimage", "immunohistochemistry"), ("skimage", "brick"),
    ("skimage", "grass"), ("skimage", "gravel"), ("skimage", "camera"),
    ("sklearn", "china.jpg"), ("sklearn", "flower.jpg"), ("matplotlib", "grace_hopper.jpg"),
)


class MissingImageError(RuntimeError):
    """A background photo could not be loaded from its package."""


@dataclass
class Sample:
    """One generated image: ``image`` HxWx3 uint8, ``mask`` HxW uint8 in {0, 1}, ``label`` class index."""

    image: np.ndarray
    mask: np.ndarray
    label: int


def _load_photo(package, name):
    if package == "skimage":
        import skimage.data
        return getattr(skimage.data, name)()
    if package == "sklearn":
        from sklearn.datasets import load_sample_image
        return load_sample_image(name)
    import matplotlib.cbook
    with matplotlib.cbook.get_sample_data(name) as handle:
        return np.asarray(Image.open(handle).convert("RGB"))


@functools.lru_cache(maxsize=None)
def backgrounds():
    """The background photos as RGB PIL images (loaded once); MissingImageError names a missing one."""
    photos = []
    for package, name in BACKGROUNDS:
        try:
            array = np.asarray(_load_photo(package, name))
        except Exception as exc:
            raise MissingImageError(f"background photo {package}:{name} cannot be loaded ({type(exc).__name__}: "
                                    f"{exc}); install the packages in requirements.txt") from None
        photos.append(Image.fromarray(array[..., :3] if array.ndim == 3 else array).convert("RGB"))
    return tuple(photos)


def _circle(radius=1.0, cx=0.0, cy=0.0, n=72):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], 1)


def _star(points=5, inner=0.45):
    t = np.arange(2 * points) * np.pi / points - np.pi / 2
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t) + 0.1], 1)


def _heart(n=72):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y + 2.5], 1) / 16.5


def _poly(*points):
    return np.asarray(points, dtype=float)


# Each class shape is a list of (polygon in the unit box [-1, 1]^2 with y pointing down, fill value).
SHAPES = {
    "circle": [(_circle(), 1)],
    "square": [(_poly((-.85, -.85), (.85, -.85), (.85, .85), (-.85, .85)), 1)],
    "triangle": [(_poly((0, -1), (1, .8), (-1, .8)), 1)],
    "plus": [(_poly((-.3, -1), (.3, -1), (.3, -.3), (1, -.3), (1, .3), (.3, .3), (.3, 1), (-.3, 1), (-.3, .3),
                    (-1, .3), (-1, -.3), (-.3, -.3)), 1)],
    "star": [(_star(), 1)],
    "ring": [(_circle(), 1), (_circle(0.55), 0)],
    "crescent": [(_circle(), 1), (_circle(0.8, 0.5, -0.15), 0)],
    "arrow": [(_poly((-1, -.25), (.1, -.25), (.1, -.75), (1, 0), (.1, .75), (.1, .25), (-1, .25)), 1)],
    "heart": [(_heart(), 1)],
    "hourglass": [(_poly((-.85, -1), (.85, -1), (.12, 0), (.85, 1), (-.85, 1), (-.12, 0)), 1)],
}
assert tuple(SHAPES) == CLASS_NAMES


def _random_colour(rng, hue=None):
    """A saturated RGB colour (float32), of any hue or within HUE_JITTER of ``hue`` (PIL's 0-255 hue scale)."""
    if hue is None:
        hsv = [rng.uniform(0, 255), rng.uniform(150, 255), rng.uniform(110, 255)]
    else:
        hsv = [(hue + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 256, rng.uniform(170, 255), rng.uniform(150, 255)]
    hsv = np.array([[hsv]], dtype=np.uint8)
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"), dtype=np.float32)[0, 0]


def _texture(rng, hue=None):
    """A random fill (solid, stripes, checker, gradient or speckle in two colours of ``hue``) as a painter.

    All randomness is drawn here; ``painter(image, mask)`` then colours the mask's pixels of ``image`` in place.
    """
    first, second = _random_colour(rng, hue), _random_colour(rng, hue)
    kind, angle, period = rng.integers(5), rng.uniform(0, 2 * np.pi), rng.uniform(8, 20)
    speckle_seed = int(rng.integers(2**32))

    def painter(image, mask):
        y, x = np.nonzero(mask)
        y, x = y.astype(np.float32), x.astype(np.float32)
        if kind == 0:
            weight = np.zeros_like(x)
        elif kind == 1:
            weight = (x * np.cos(angle) + y * np.sin(angle)) // (period / 2) % 2
        elif kind == 2:
            weight = (x // period + y // period) % 2
        elif kind == 3:
            ramp = x * np.cos(angle) + y * np.sin(angle)
            weight = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0) if ramp.size else ramp
        else:
            weight = np.random.default_rng(speckle_seed).random(x.size, dtype=np.float32) * 0.6
        image[mask] = first + weight[:, None] * (second - first)

    return painter, first


def _object_mask(rng, label, size=IMAGE_SIZE):
    """Binary mask of the class object: random scale, aspect, rotation and a position that keeps it inside."""
    scale = rng.uniform(*OBJECT_SIZE) / 2
    aspect = rng.uniform(0.85, 1.15)
    angle = np.deg2rad(rng.uniform(-25, 25))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    parts = [(poly * [scale * aspect, scale / aspect]) @ rotation.T for poly, _ in SHAPES[CLASS_NAMES[label]]]
    low, high = parts[0].min(0), parts[0].max(0)
    centre = np.array([rng.uniform(2 - low[0], size - 3 - high[0]), rng.uniform(2 - low[1], size - 3 - high[1])])
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for points, (_, value) in zip(parts, SHAPES[CLASS_NAMES[label]]):
        draw.polygon([tuple(p) for p in points + centre], fill=value)
    return np.asarray(canvas) > 0


def _distractor_mask(rng, size=IMAGE_SIZE):
    """Binary mask of one distractor: a thick line, a zigzag stroke, an arc or a cluster of dots."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    kind = rng.integers(4)
    start = rng.uniform(0, size, 2)
    width = int(rng.integers(3, 7))
    if kind == 0:
        angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(30, 110)
        end = start + length * np.array([np.cos(angle), np.sin(angle)])
        draw.line([tuple(start), tuple(end)], fill=1, width=width)
    elif kind == 1:
        steps = rng.uniform(-35, 35, (int(rng.integers(3, 6)), 2))
        points = np.cumsum(np.vstack([start, steps]), 0)
        draw.line([tuple(p) for p in points], fill=1, width=width, joint="curve")
    elif kind == 2:
        radius = rng.uniform(15, 50)
        first = rng.uniform(0, 360)
        draw.arc([*(start - radius), *(start + radius)], first, first + rng.uniform(60, 200), fill=1, width=width)
    else:
        for centre in start + rng.uniform(-35, 35, (int(rng.integers(3, 9)), 2)):
            radius = rng.uniform(2, 5)
            draw.ellipse([*(centre - radius), *(centre + radius)], fill=1)
    return np.asarray(canvas) > 0


def _background(rng, size=IMAGE_SIZE):
    photo = backgrounds()[rng.integers(len(BACKGROUNDS))]
    side = rng.uniform(0.3, 1.0) * min(photo.size)
    left, top = rng.uniform(0, photo.width - side), rng.uniform(0, photo.height - side)
    crop = photo.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(crop, dtype=np.float32)


def generate(seed, split, index, with_object=True):
    """Sample ``index`` of ``split`` ('train' or 'val'); ``with_object=False`` leaves the class object out."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    label = index % len(CLASS_NAMES)
    image = _background(rng)
    for _ in range(rng.integers(DISTRACTORS[0], DISTRACTORS[1] + 1)):
        mask = _distractor_mask(rng)
        _texture(rng)[0](image, mask)
    mask = _object_mask(rng, label)
    paint, colour = _texture(rng, CLASS_HUES[label])
    outline_width = int(rng.integers(2, 4))
    outline = _random_colour(rng) * 0.25 if colour.mean() > 110 else 255 - _random_colour(rng) * 0.25
    if with_object:
        image[mask] = outline
        paint(image, ndimage.binary_erosion(mask, iterations=outline_width))
    return Sample(np.round(image).astype(np.uint8), mask.astype(np.uint8), label)


def jpeg_bytes(image):
    """The JPEG encoding (quality JPEG_QUALITY) that the ImageNet-style folders store."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def as_stored(image):
    """The image as a reader of the ImageNet-style folders sees it (PIL RGB after the JPEG round trip)."""
    return Image.open(io.BytesIO(jpeg_bytes(image))).convert("RGB")
