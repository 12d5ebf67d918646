"""The report's figures: perturbation curves, token-F1 against k, BERT perturbation curves, a grid of every
method's heatmap on a few images and a text heatmap (HTML) of one test review under every method."""
import json
from pathlib import Path

import numpy as np

from baselines.suite.suites import hdf5_path

GRID_IMAGES = 4


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(figure, path, curves=()):
    """Write ``figure`` (tight layout) to ``path``; each axis of ``curves`` gets a light grid and a legend."""
    for axis in curves:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90, metadata={"Software": None})
    _pyplot().close(figure)


def line_style(index, method):
    """Method ``index``'s colour and line: ten colours, then the same colours dashed, then dotted (matplotlib's
    cycle alone repeats after ten methods); the random baseline is grey and dashed."""
    if method == "random":
        return {"color": "grey", "linestyle": "--"}
    return {"color": f"C{index % 10}", "linestyle": ("-", "--", ":")[index // 10 % 3]}


def perturbation_curves(report, path):
    from baselines.suite.report import PERTURBATION_COLUMNS, ordered
    methods = ordered([m for m in report.config.methods if report.result(f"perturbation/{m}/top/pos")])
    if not methods:
        return False
    plt = _pyplot()
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True, sharey=True)
    for axis, (vis_class, neg, label) in zip(axes.flat, PERTURBATION_COLUMNS):
        for index, method in enumerate(methods):
            run = report.result(f"perturbation/{method}/{vis_class}/{'neg' if neg else 'pos'}")
            if run:
                axis.plot(run["steps"], run["accuracy"], marker=".", label=f"{method} ({run['auc']:.1f})",
                          **line_style(index, method))
        axis.set(title=label, xlabel="fraction of pixels removed", ylabel="top-1 accuracy", ylim=(0, 1.02))
    _save(figure, path, curves=figure.axes)
    return True


def token_f1(report, path):
    methods = [m for m in report.config.text_methods + ["random"] if report.result(f"eraser/{m}")]
    if not methods:
        return False
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for index, method in enumerate(methods):
        f1 = report.result(f"eraser/{method}")["token_f1"]
        ks = sorted(f1, key=int)
        axis.plot([int(k) for k in ks], [100 * f1[k] for k in ks], marker=".", label=method,
                  **line_style(index, method))
    axis.set(xlabel="k (top-k words)", ylabel="token F1 (%)", title="ERASER Movies: token-F1 against k")
    _save(figure, path, curves=[axis])
    return True


def bert_perturbation_curves(report, path):
    methods = [m for m in report.config.text_methods if report.result(f"bert-perturbation/{m}/pos")]
    if not methods:
        return False
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for axis, sign in zip(axes, ("pos", "neg")):
        for index, method in enumerate(methods):
            run = report.result(f"bert-perturbation/{method}/{sign}")
            if run:
                axis.plot(run["fractions"], run["accuracy"], marker=".", label=f"{method} ({run['auc']:.2f})",
                          **line_style(index, method))
        axis.set(title={"pos": "positive (lower is better)", "neg": "negative (higher is better)"}[sign],
                 xlabel="fraction of tokens removed", ylabel="accuracy (%)")
    _save(figure, path, curves=figure.axes)
    return True


def heatmap_grid(report, path):
    """Rows: the first images of the predicted-class visualizations; columns: the image, then every method."""
    import h5py
    methods = [m for m in report.config.methods
               if report.result(f"visualizations/{m}/top") and hdf5_path(report.config, m, "top").is_file()]
    if not methods:
        return False
    maps = {}
    for method in methods:
        with h5py.File(hdf5_path(report.config, method, "top"), "r") as f:
            maps[method] = f["vis"][:GRID_IMAGES, 0]
            images = f["image"][:GRID_IMAGES]
    plt = _pyplot()
    rows, columns = len(images), len(methods) + 1
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.6 * rows), squeeze=False)
    for row, image in enumerate(images):
        picture = np.clip(image.transpose(1, 2, 0), 0, 1)
        axes[row, 0].imshow(picture)
        for column, method in enumerate(methods, start=1):
            axes[row, column].imshow(picture)
            axes[row, column].imshow(np.nan_to_num(maps[method][row]), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if row == 0:
                axes[row, column].set_title(method, fontsize=6)
    for axis in axes.flat:
        axis.axis("off")
    _save(figure, path)
    return True


def text_heatmap(report, path):
    """The first test review's words coloured by each method's word scores (the ERASER soft rationales)."""
    from BERT_rationale_benchmark.utils import load_flattened_documents
    from BERT_rationale_benchmark.visualize import html_page, html_row
    methods = [m for m in report.config.text_methods + ["random"] if report.result(f"eraser/{m}")]
    rows, title = [], None
    for method in methods:
        results = report.config.bert_output / method / "identifier_results_5.json"
        if not results.is_file():
            continue
        first = json.loads(results.read_text().splitlines()[0])["rationales"][0]
        words = load_flattened_documents(str(report.config.eraser), {first["docid"]})[first["docid"]]
        rows.append((method, html_row(words, first["soft_rationale_predictions"])))
        title = first["docid"]
    if not rows:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_page(f"Test review {title}: word scores of every method", [(title, rows)]))
    return True


def make_all(report, folder):
    """Write the figures that the records allow; returns the names written."""
    folder = Path(folder)
    makers = (("perturbation_curves.png", perturbation_curves), ("heatmaps.png", heatmap_grid),
              ("token_f1.png", token_f1), ("bert_perturbation.png", bert_perturbation_curves),
              ("text_heatmap.html", text_heatmap))
    return [name for name, maker in makers if maker(report, folder / name)]
