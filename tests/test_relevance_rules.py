"""The relevance rules: conservation where the rule promises it, and per-sample independence in a batch."""
import pytest
import torch

from baselines.methods.common import one_hot
from baselines.relevance import rules
from baselines.relevance.composites import CONSERVATIVE, PLAIN_LRP
from baselines.relevance.layers import recording
import te_reference as te
from tiny_models import ours_from, timm_tiny

pytestmark = pytest.mark.numerics


def per_sample(t):
    return t.flatten(1).sum(1)


def test_safe_divide_matches_definition():
    b = torch.tensor([2.0, -1e-9, 0.0, -3.0], dtype=torch.float64)
    a = torch.ones_like(b)
    expected = torch.tensor([1 / (2 + 1e-9), 1 / 1e-9, 0.0, 1 / (-3 + 1e-9)], dtype=torch.float64)
    torch.testing.assert_close(rules.safe_divide(a, b), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("special", ["none", "minus_eps", "zero"])
@pytest.mark.parametrize("reuse", [False, True])
def test_safe_divide_equals_te_formula_with_and_without_zeros(dtype, special, reuse):
    """CPU builds the masks only when a count finds a zero; every path equals TE's formula value for value."""
    b = torch.randn(3, 4, 50, dtype=dtype)
    b[0, 0, :5] = {"none": 1.0, "minus_eps": -rules.EPS, "zero": 0.0}[special]
    a = torch.randn(3, 1, 50, dtype=dtype)
    expected = te.safe_divide(a, b)
    assert torch.equal(rules.safe_divide(a, b.clone() if reuse else b, reuse=reuse), expected)
    assert torch.equal(rules.safe_divide(b, a), te.safe_divide(b, a))


@pytest.mark.parametrize("ours", [True, False])
def test_linear_rules_equal_te_where_a_whole_output_sums_to_zero(ours):
    """Where every product ``x_i W_ji`` of an output is 0 (here: non-negative tokens, a weight row <= 0, a zero
    token), TE zeroes ``R_j / Z_j``; ours skips that mask and must still give TE's relevance."""
    x = torch.rand(2, 6, 16, dtype=torch.float64)
    x[1, 2] = 0
    w = torch.randn(8, 16, dtype=torch.float64)
    w[3] = -w[3].abs()
    R = torch.rand(2, 6, 8, dtype=torch.float64) + 0.5
    rule = rules.linear_zplus if ours else rules.linear_alpha1_separate
    expected = te.linear(x, w, R, ours)
    assert expected.abs().max() < 100
    torch.testing.assert_close(rule(x, w, R), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rule", [rules.linear_zplus, rules.linear_alpha1_separate])
def test_linear_rules_run_on_the_relevant_rows_only_and_agree(rule):
    """After the last block only the class token carries relevance: the rule sees those rows, the rest stay 0."""
    x, w = torch.randn(3, 10, 16, dtype=torch.float64), torch.randn(8, 16, dtype=torch.float64)
    R = torch.zeros(3, 10, 8, dtype=torch.float64)
    R[:, 0] = torch.rand(3, 8, dtype=torch.float64)
    seen = []

    def spy(*args):
        seen.append(args[0].shape)
        return rule(*args)

    out = rules.on_relevant_rows(spy, x, w, R)
    assert seen == [(3, 16)]
    torch.testing.assert_close(out, rule(x, w, R), rtol=1e-12, atol=0)
    R[:, 1:6] = 1.0
    rules.on_relevant_rows(spy, x, w, R)
    assert seen[-1] == x.shape


def test_linear_zplus_conserves_and_plain_rule_does_not():
    x = torch.randn(4, 6, 16, dtype=torch.float64)
    w = torch.randn(8, 16, dtype=torch.float64)
    R = torch.rand(4, 6, 8, dtype=torch.float64)
    torch.testing.assert_close(per_sample(rules.linear_zplus(x, w, R)), per_sample(R))
    assert (per_sample(rules.linear_alpha1_separate(x, w, R)) - per_sample(R)).abs().max() > 0.1


def test_add_normalised_conserves_per_sample_with_shares_by_raw_sums():
    a, b = torch.randn(3, 5, 4, dtype=torch.float64), torch.randn(3, 5, 4, dtype=torch.float64) + 1
    R = torch.randn(3, 5, 4, dtype=torch.float64)
    ra, rb = rules.add_normalised([a, b], R)
    torch.testing.assert_close(per_sample(ra) + per_sample(rb), per_sample(R))
    raw_a, raw_b = rules.gradient_x_input([a, b], R)
    share = per_sample(raw_a).abs() / (per_sample(raw_a).abs() + per_sample(raw_b).abs())
    torch.testing.assert_close(per_sample(ra), share * per_sample(R))


def test_matmul_gives_each_operand_the_whole_relevance():
    a, b = torch.rand(2, 3, 5, 5, dtype=torch.float64), torch.rand(2, 3, 5, 4, dtype=torch.float64) + 0.5
    R = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    ra, rb = rules.matmul(a, b, R)
    torch.testing.assert_close(per_sample(ra), per_sample(R))
    torch.testing.assert_close(per_sample(rb), per_sample(R))


def test_clone_and_token_select_pass_relevance_on():
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    Rs = [torch.randn(2, 5, 4, dtype=torch.float64) for _ in range(2)]
    torch.testing.assert_close(rules.clone(x, Rs), Rs[0] + Rs[1])
    R = torch.randn(2, 4, dtype=torch.float64)
    out = rules.select_token(x, 0, R)
    torch.testing.assert_close(out[:, 0], R)
    assert out[:, 1:].abs().max() == 0


@pytest.fixture(scope="module")
def recorded_model():
    model = ours_from(timm_tiny(depth=4, offset=0.5)).double()
    images = torch.randn(3, 3, 64, 64, dtype=torch.float64)
    return model, images


def test_conservative_rules_conserve_through_every_block(recorded_model):
    """Sum of relevance entering each block equals the sum leaving it (1e-3 relative), per sample."""
    model, images = recorded_model
    with recording(model), torch.no_grad():
        logits = model(images)
        R = one_hot(logits, logits.argmax(-1))
        R = model.norm.relprop(model.pool.relprop(model.head.relprop(R, CONSERVATIVE), CONSERVATIVE), CONSERVATIVE)
        torch.testing.assert_close(per_sample(R), torch.ones(3, dtype=torch.float64), rtol=1e-3, atol=0)
        for block in reversed(model.blocks):
            R_in = block.relprop(R, CONSERVATIVE)
            torch.testing.assert_close(per_sample(R_in), per_sample(R), rtol=1e-3, atol=0)
            R = R_in


def test_plain_lrp_is_not_conservative(recorded_model):
    """TE's layers_lrp normalises the two sign parts of each linear layer separately: relevance grows (skipped
    from the conservation test on purpose)."""
    model, images = recorded_model
    with recording(model), torch.no_grad():
        logits = model(images)
        R = model.head.relprop(one_hot(logits, logits.argmax(-1)), PLAIN_LRP)
    assert (per_sample(R) - 1).abs().max() > 1e-2
