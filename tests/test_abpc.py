"""AttnLRP's faithfulness figure in the ViT perturbation test: the area between the LeRF and MoRF curves."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines.eval import cli, metrics
from tiny_models import ours_from, timm_tiny

SCRIPT = Path(__file__).resolve().parents[1] / "baselines" / "ViT" / "pertubation_eval_from_hdf5.py"


def load_script():
    spec = importlib.util.spec_from_file_location("perturbation_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_area_between_curves_by_hand():
    x = [0.0, *metrics.PERTURBATION_STEPS]
    lerf = np.array([[2.0] * 10, [1.0] * 10])
    morf = np.array([[2.0 - 2 * s for s in x], [1.0] * 10])
    # image 0: gap 2x over [0, 0.9] -> 0.81; image 1: no gap
    assert metrics.area_between_curves(lerf, morf) == pytest.approx(0.81 / 2)
    summary = metrics.abpc_summary(morf, lerf, morf / 10, lerf / 10)
    assert summary["abpc_prob"] == pytest.approx(0.081 / 2)
    assert summary["morf_logit"] == pytest.approx(morf.mean(0).tolist())


@pytest.mark.parametrize("neg", [False, True])
def test_abpc_columns_equal_per_image_loop(neg):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    script = load_script()
    model = ours_from(timm_tiny(depth=2, img=224, classes=4))
    gen = torch.Generator().manual_seed(0)
    images, vis = torch.rand(2, 3, 224, 224, generator=gen), torch.rand(2, 1, 224, 224, generator=gen)
    explained = torch.tensor([1, 3])
    with torch.inference_mode():
        target = model(cli.normalise(images, model)).argmax(1)
        plain = script.evaluate_batch(model, images, vis, target, neg)
        rows = script.evaluate_batch(model, images, vis, target, neg, explained)
        np.testing.assert_array_equal(rows[:, :28], plain)
        curves = rows[:, 28:].reshape(2, 4, 10)
        for b in range(2):
            for column, most_first in ((0, True), (1, False)):
                order = torch.argsort(vis[b].flatten(), descending=most_first, stable=True)
                logits = []
                for step in (0, *metrics.PERTURBATION_STEPS):
                    image = images[b].clone().view(3, -1)
                    image[:, order[:int(224 * 224 * step)]] = 0
                    logits.append(model(cli.normalise(image.view(1, 3, 224, 224), model))[0])
                logits = torch.stack(logits)
                np.testing.assert_allclose(curves[b, column], logits[:, explained[b]].numpy(), atol=1e-4)
                np.testing.assert_allclose(curves[b, 2 + column], logits.softmax(1)[:, explained[b]].numpy(),
                                           atol=1e-5)
