"""On the shipped synthetic ViT, transformer_attribution finds the class object far better than trivial maps."""
import json

from baselines.models import DEFAULT_MODEL, PRETRAINED_DIR, create_model
from scripts.localisation_check import scores, validation_set


def test_transformer_attribution_overlaps_the_object_mask():
    card = json.loads((PRETRAINED_DIR / f"{DEFAULT_MODEL}.json").read_text())
    images, masks, _ = validation_set(card, 50)
    result = scores(create_model(), images, masks, ["transformer_attribution"])
    assert result["transformer_attribution"] > 0.5
    assert result["transformer_attribution"] > 2 * max(result["uniform"], result["centre_bias"])
