"""Memory on real sizes: no weight copies kept after LRP, and the integrated-gradient loop runs in chunks sized
by a memory budget (outputs unchanged)."""
import torch

from baselines.methods import beyond_intuition, explain
from tiny_models import ours_from, timm_tiny


def tiny_model():
    torch.manual_seed(0)
    return ours_from(timm_tiny(depth=4)).double()


def images(count=2):
    torch.manual_seed(1)
    return torch.randn(count, 3, 64, 64, dtype=torch.float64)


def held_tensors(model):
    """Bytes of tensors that modules hold outside their parameters and buffers (caches, kept inputs)."""
    total = 0
    for module in model.modules():
        for name, value in vars(module).items():
            values = value.values() if isinstance(value, dict) and name not in ("_parameters", "_buffers", "_modules") \
                else value if isinstance(value, (tuple, list)) else [value]
            total += sum(v.numel() * v.element_size() for v in values if isinstance(v, torch.Tensor))
    return total


def test_lrp_keeps_no_weight_copies():
    torch.set_num_threads(1)
    model = tiny_model()
    for method in ("transformer_attribution", "full_lrp", "lrp_last_layer"):
        explain(model, images(), method)
        assert held_tensors(model) == 0, method


def test_integrated_gradient_chunks_follow_the_memory_budget(monkeypatch):
    torch.set_num_threads(1)
    model = tiny_model()
    map_shape = torch.Size([4, 17, 17])
    per_input = beyond_intuition.ATTENTION_COPIES * 4 * 17 * 17 * 8
    monkeypatch.setattr(beyond_intuition, "IG_MEMORY_BUDGET", 3 * per_input + 1)
    assert beyond_intuition.ig_chunk_size(map_shape, torch.float64) == 3
    assert beyond_intuition.ig_chunk_size(map_shape, torch.float32) == 6
    forwards = []
    original = model.forward

    def counting(inputs, **options):
        forwards.append(inputs.shape[0])
        return original(inputs, **options)

    monkeypatch.setattr(model, "forward", counting)
    small = explain(model, images(), "beyond_intuition_h", steps=5)
    assert max(forwards[1:]) == 3 and sum(forwards[1:]) == 2 * 5
    monkeypatch.setattr(beyond_intuition, "IG_MEMORY_BUDGET", 2 ** 40)
    forwards.clear()
    large = explain(model, images(), "beyond_intuition_h", steps=5)
    assert forwards[1:] == [2 * 5]
    torch.testing.assert_close(small, large, rtol=1e-12, atol=0)
