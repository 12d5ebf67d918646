"""How relevance passes one operation: the LRP rules of the original works, as batched tensor functions.

Every function takes the operation's recorded inputs and the relevance ``R`` of its output and returns the
relevance of its inputs. Sums that the rules normalise by are taken per sample (dimension 0 is the batch), so a
batch of B inputs gives B independent explanations. No function builds an autograd graph.

Two rule sets exist (see ``composites.py``): TE's ``layers_ours`` (conservative) and ``layers_lrp`` (plain LRP).
"""
import torch
import torch.nn.functional as F

EPS = 1e-9


def safe_divide(a, b, reuse=False):
    """``a / (b + 1e-9)``, and exactly 0 where ``b == 0`` (TE's stabiliser, sign-agnostic; a denominator that
    lands on exactly 0 becomes 1e-9). With ``reuse``, the caller's temporary ``b`` holds the result.

    On CPU, where a comparison and a masked write each cost about three arithmetic passes, the masks are built
    only when a count finds a zero in ``b`` (then) or in ``b + 1e-9`` (same result either way)."""
    always = b.device.type != "cpu"
    zero = b == 0 if always or _has_zero(b) else None
    den = b.add_(EPS) if reuse else b + EPS
    if always or _has_zero(den):
        den.masked_fill_(den == 0, EPS)
    out = _divide(a, den)
    return out if zero is None else out.masked_fill_(zero, 0.0)


def _has_zero(t):
    return torch.count_nonzero(t) < t.numel()


def _divide(a, den):
    """``a / den``, into the temporary ``den`` when the result has its shape."""
    fits = den.shape == torch.broadcast_shapes(a.shape, den.shape)
    return torch.div(a, den, out=den) if fits else a / den


def _split_signs(x):
    return x.clamp(min=0), x.clamp(max=0)


def _divide_by_sum_of_products(R, Z):
    """``R / (Z + 1e-9)``, written into the temporary ``Z``, for ``Z = x+ W+^T (+ x- W-^T)``: a sum of
    non-negative products. It equals ``safe_divide(R, Z)`` where the rules use it: ``safe_divide`` zeroes ``S_j``
    where ``Z_j == 0``, but then every product ``x_i W_ji`` of that sum is 0, so each ``W_ji S_j`` that the backward
    product ``S W`` adds up is either 0 (``W_ji == 0``) or later multiplied by ``x_i == 0``; the finite ``S_j`` changes
    nothing (unless products underflow to 0, below 1e-38 in float32)."""
    return torch.div(R, Z.add_(EPS), out=Z)


def linear_zplus(x, weight, R):
    """Conservative z+ rule (TE ``layers_ours``, alpha = 1, beta = 0), bias excluded:

    ``Z = x+ W+^T + x- W-^T``;  ``S = R / Z``;  ``R_in = x+ * (S W+) + x- * (S W-)``.
    """
    xp, xn = _split_signs(x)
    wp, wn = _split_signs(weight)
    S = _divide_by_sum_of_products(R, F.linear(xp, wp).add_(F.linear(xn, wn)))
    return (S @ wp).mul_(xp).addcmul_(S @ wn, xn)


def on_relevant_rows(rule, x, weight, R):
    """``rule(x, weight, R)`` for a linear rule, which treats each row (token) on its own and gives a row whose
    relevance is all 0 the relevance 0 (``S = 0`` there). On CPU, when at most half the rows carry relevance (a
    classifier reads one token: after the last block only that token's rows do), the rule runs on those rows only."""
    rows = R.reshape(-1, R.shape[-1])
    if R.device.type != "cpu" or rows.shape[0] < 2:
        return rule(x, weight, R)
    relevant = rows.any(dim=-1).nonzero().squeeze(1)
    if len(relevant) > rows.shape[0] // 2:
        return rule(x, weight, R)
    inputs = x.reshape(-1, x.shape[-1])
    out = inputs.new_zeros(inputs.shape)
    out[relevant] = rule(inputs[relevant], weight, rows[relevant])
    return out.view(x.shape)


def linear_alpha1_separate(x, weight, R):
    """TE ``layers_lrp`` linear rule with alpha = 1: each sign part normalised on its own (not conservative):

    ``R_in = x+ * ((R / x+W+^T) W+) + x- * ((R / x-W-^T) W-)``.
    """
    xp, xn = _split_signs(x)
    wp, wn = _split_signs(weight)
    out = (_divide_by_sum_of_products(R, F.linear(xp, wp)) @ wp).mul_(xp)
    return out.addcmul_(_divide_by_sum_of_products(R, F.linear(xn, wn)) @ wn, xn)


def conv_zbeta(x, weight, stride, padding, R):
    """z^B (bounded) rule for the first convolution, bounds = per-sample min and max of the input:

    ``Z = conv(x, W) - conv(L, W+) - conv(H, W-) + 1e-9``;  ``S = R / Z``;
    ``R_in = x * convT(S, W) - L * convT(S, W+) - H * convT(S, W-)``.
    """
    wp, wn = _split_signs(weight)
    dims = tuple(range(1, x.dim()))
    low = x.amin(dim=dims, keepdim=True).expand_as(x)
    high = x.amax(dim=dims, keepdim=True).expand_as(x)

    def conv(inp, w):
        return F.conv2d(inp, w, stride=stride, padding=padding)

    S = R / (conv(x, weight) - conv(low, wp) - conv(high, wn) + EPS)
    out_size = x.shape[-2:]

    def conv_t(w):
        extra = [o - ((s - 1) * st - 2 * p + k) for o, s, st, p, k in
                 zip(out_size, S.shape[-2:], stride, padding, w.shape[-2:])]
        return F.conv_transpose2d(S, w, stride=stride, padding=padding, output_padding=extra)

    return x * conv_t(weight) - low * conv_t(wp) - high * conv_t(wn)


def gradient_x_input(inputs, R, total=None, first_only=False):
    """LRP-0 for a sum ``Z = sum_i x_i``: ``R_i = x_i * R / Z`` (TE ``RelPropSimple`` on ``Add``); ``total`` is
    ``Z`` when the caller kept it. ``first_only``: only ``R_0`` is wanted (the others are not computed)."""
    if total is None:
        total = sum(inputs[1:], inputs[0])
        S = safe_divide(R, total, reuse=len(inputs) > 1)
    else:
        S = safe_divide(R, total)
    wanted = inputs[:1] if first_only else inputs
    return [x * S for x in wanted[:-1]] + [S.mul_(wanted[-1])]


def _per_sample_sum(t):
    return t.flatten(1).sum(1).view(-1, *([1] * (t.dim() - 1)))


def add_normalised(inputs, R, total=None, first_only=False):
    """TE's residual rule: gradient x input, then each branch rescaled so that the two shares sum to ``sum R``
    and each share is proportional to the absolute value of its raw sum (sums per sample). ``first_only``: only
    ``R_0`` is wanted (``R_1`` is still needed for the shares)."""
    a, b = gradient_x_input(inputs, R, total)
    a_sum, b_sum = _per_sample_sum(a), _per_sample_sum(b)
    total = a_sum.abs() + b_sum.abs()
    r_sum = _per_sample_sum(R)
    a.mul_(safe_divide(safe_divide(a_sum.abs(), total) * r_sum, a_sum))
    if first_only:
        return [a]
    b.mul_(safe_divide(safe_divide(b_sum.abs(), total) * r_sum, b_sum))
    return [a, b]


def clone(x, Rs):
    """Merge the relevance of ``n`` uses of ``x``: ``R_in = x * sum_i R_i / x`` (TE ``Clone``; the sum of the
    quotients is taken as the quotient of the sum)."""
    return safe_divide(sum(Rs[1:], Rs[0]), x).mul_(x)


def matmul(a, b, R, product=None):
    """LRP-0 for ``Z = a @ b``: ``R_a = a * (S b^T)``, ``R_b = b * (a^T S)`` with ``S = R / Z`` (``product``:
    ``a @ b`` when the caller has it; it is overwritten).

    Each operand receives about the whole relevance; the attention code halves both (TE's normalisation).
    """
    S = safe_divide(R, a @ b if product is None else product, reuse=True)
    return (S @ b.transpose(-1, -2)).mul_(a), (a.transpose(-1, -2) @ S).mul_(b)


def select_token(x, rows, R):
    """Relevance of a token pooling ``y_b = x[b, rows_b]``: ``R_in[b, rows_b] = y_b * R_b / y_b``, 0 elsewhere."""
    out = torch.zeros_like(x)
    batch = torch.arange(x.shape[0], device=x.device)
    picked = x[batch, rows]
    out[batch, rows] = picked * safe_divide(R, picked)
    return out
