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


def save_clip_panel(path, image, rows):
    """One row per text: the text's title, then per method the heatmap over ``image`` and, under it, the words
    between the start and end tokens coloured by their relevance (scaled by the row's largest; special tokens
    omitted, as the generic-attention notebook does). ``rows``: ``(title, tokens, [(method, heatmap, scores)])``."""
    columns = max(len(cells) for _, _, cells in rows)
    figure = plt.figure(figsize=(2.6 * columns + 0.2, 3.4 * len(rows)), layout="constrained")
    grid = figure.add_gridspec(2 * len(rows), columns, height_ratios=[6, 1] * len(rows))
    for r, (title, tokens, cells) in enumerate(rows):
        for c, (method, heatmap, scores) in enumerate(cells):
            axis = figure.add_subplot(grid[2 * r, c])
            axis.imshow(np.clip(overlay(image, heatmap), 0, 1))
            axis.set_title(f"{method}\n{title}" if c == 0 else method, fontsize=8)
            axis.axis("off")
            words, values = tokens[1:-1], np.asarray(scores[1:len(tokens) - 1], dtype=float)
            strip = figure.add_subplot(grid[2 * r + 1, c])
            peak = np.abs(values).max() if len(values) else 0
            strip.imshow((values / peak if peak > 0 else values)[None, :], cmap="Reds", vmin=0, vmax=1,
                         aspect="auto")
            strip.set_xticks(range(len(words)), words, rotation=45, ha="right", fontsize=7)
            strip.set_yticks([])
    figure.savefig(path, dpi=100)
    plt.close(figure)
