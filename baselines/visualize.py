"""Heatmaps over images, as PNG files."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def overlay(image, heatmap, weight=0.5):
    """``image`` HxWx3 in [0, 1], ``heatmap`` HxW in [0, 1] -> HxWx3 blend of the image and a jet colouring."""
    colours = matplotlib.colormaps["jet"](heatmap)[..., :3]
    blend = (1 - weight) * image + weight * colours
    return blend / blend.max()


def save_overlay(path, image, heatmap):
    plt.imsave(path, np.clip(overlay(image, heatmap), 0, 1))


def save_panel(path, image, heatmaps, title, columns=6):
    """The image, then each ``(name, heatmap)`` overlaid on it, ``columns`` a row; ``title`` above."""
    count = len(heatmaps) + 1
    rows = -(-count // columns)
    cols = min(count, columns)
    figure, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.5 * rows + 0.4), squeeze=False)
    axes = axes.ravel()
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=9)
    for axis, (name, heatmap) in zip(axes[1:], heatmaps):
        axis.imshow(np.clip(overlay(image, heatmap), 0, 1))
        axis.set_title(name, fontsize=9)
    for axis in axes:
        axis.axis("off")
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
