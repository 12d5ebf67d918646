"""LRP rules in gradient x input form (AttnLRP / LXT "efficient" mode): each rule is an autograd function whose
forward is the layer's own output and whose backward is the modified gradient ``g_in = R_in / x``.

If every layer's backward is modified so, then ``x * dz/dx`` at the input is the LRP relevance of the target logit
``z`` (relevance of a tensor ``a`` = ``a * g_a``): one forward and one backward. Plain autograd already gives
LRP-0 (epsilon 0, biases absorbing their share) through linear layers, additions, constant scalings and the softmax
(AttnLRP's softmax rule ``R_s = s * (R - p sum R)`` is exactly ``s * grad``); only the rules below change gradients.
Weights are never differentiated (they are frozen while explaining).
"""
import torch
import torch.nn.functional as F

TINY = 1e-10
"""Stabiliser of divisions by an input (LXT's)."""


def stabilise(x, eps):
    """``x + eps * sign(x)``, with sign(0) = +1 (Zennit's ``stabilize``)."""
    return x + eps * torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class ScaleGradient(torch.autograd.Function):
    """``y = out`` forward; backward ``g_x = factor * g_y`` (``x`` is ``out``'s input, ``out``'s own graph dropped).

    Identity rule for an element-wise ``out = f(x)``: ``factor = f(x) / x``, so ``R_x = x * g_x = R_out``.
    Uniform rule for one factor of a product: ``factor = 1 / n`` on the factor's gradient (``n`` factors).
    Epsilon rule of a linear layer: ``factor = z / (z + eps sign z)`` on ``z``'s gradient."""

    @staticmethod
    def forward(ctx, x, out, factor):
        ctx.factor = factor
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None, None


def identity_rule(x, out):
    """Identity rule (AttnLRP eq. 9) for an element-wise non-linearity ``out = f(x)``: ``R_x = R_out``
    (``f(0) / 0`` taken as 0; GELU, quick-GELU and tanh keep ``f(x) / x`` bounded elsewhere)."""
    return ScaleGradient.apply(x, out, (out.detach() / x.detach()).nan_to_num_(nan=0.0))


def uniform_rule(x, factors):
    """Uniform rule (AttnLRP eq. 7) for one input of a product of ``factors`` inputs: ``R_x = R_out / factors``
    (gradient x input gives each factor the whole ``R_out``)."""
    return ScaleGradient.apply(x, x, 1.0 / factors)


def epsilon_rule(z, eps):
    """Epsilon-LRP of a linear layer ``z = x W^T + b``: ``R_x = x * (W^T (R_z / (z + eps sign z)))``, set on ``z``'s
    gradient; the bias keeps its share ``b R_z / z`` (bias-aware). ``eps = 0`` is plain autograd."""
    return ScaleGradient.apply(z, z, z.detach() / stabilise(z.detach(), eps))


def constant_norm(x, out, norm):
    """``out = x / norm`` (an L2 normalisation) with ``norm`` held constant: ``g_x = g_out / norm``, so
    ``R_x = R_out`` (the identity rule, as for LayerNorm)."""
    return ScaleGradient.apply(x, out, 1 / norm.detach())


class ConstantVarianceNorm(torch.autograd.Function):
    """LayerNorm ``y = (x - mean x) / s * w + b`` with ``s = sqrt(var x + eps)`` held constant (AttnLRP's identity
    rule on normalisation): ``g_x = c(w g_y / s)``, ``c(v) = v - mean v``."""

    @staticmethod
    def forward(ctx, x, out, weight, std):
        ctx.save_for_backward(weight, std)
        return out.detach()

    @staticmethod
    def backward(ctx, grad):
        weight, std = ctx.saved_tensors
        g = grad / std if weight is None else grad * weight / std
        return g - g.mean(dim=-1, keepdim=True), None, None, None


def constant_variance_norm(module, x, out):
    """``out`` of a ``nn.LayerNorm`` ``module`` on ``x``, with the LRP backward of ``ConstantVarianceNorm``."""
    dims = tuple(range(-len(module.normalized_shape), 0))
    std = (x.detach().var(dim=dims, unbiased=False, keepdim=True) + module.eps).sqrt()
    weight = None if module.weight is None else module.weight.detach()
    return ConstantVarianceNorm.apply(x, out, weight, std)


class GammaRule(torch.autograd.Function):
    """Generalised LRP-gamma (Zennit's ``Gamma``) of ``z = fn(x, W, b)`` (linear or convolution), in gradient x input
    form as LXT's Zennit patch: ``R_z = z * g_z``; with ``W^+g = W + gamma W^+``, ``W^-g = W + gamma W^-``
    (same for ``b``), positive outputs take ``R_z [z > 0] / (fn(x+, W^+g, b^+g) + fn(x-, W^-g, 0))`` and pass it
    back through those two terms, negative outputs likewise with ``W^+g`` and ``W^-g`` swapped (denominators
    stabilised by 1e-6); ``g_x = R_x / (x + 1e-10 sign x)``."""

    @staticmethod
    def forward(ctx, x, out, fn, weight, bias, gamma):
        ctx.save_for_backward(x, out, weight, bias)
        ctx.fn, ctx.gamma = fn, gamma
        return out.detach()

    @staticmethod
    def backward(ctx, grad):
        x, out, weight, bias = ctx.saved_tensors
        fn, gamma = ctx.fn, ctx.gamma
        R = grad * out
        w_up, w_down = weight + gamma * weight.clamp(min=0), weight + gamma * weight.clamp(max=0)
        b_up = b_down = None
        if bias is not None:
            b_up, b_down = bias + gamma * bias.clamp(min=0), bias + gamma * bias.clamp(max=0)
        with torch.enable_grad():
            pos = x.detach().clamp(min=0).requires_grad_()
            neg = x.detach().clamp(max=0).requires_grad_()
            R_x = 0
            for mask, w_pos, b_pos, w_neg in ((out > 0, w_up, b_up, w_down), (out < 0, w_down, b_down, w_up)):
                terms = fn(pos, w_pos, b_pos), fn(neg, w_neg, None)
                S = R * mask / stabilise(sum(terms).detach(), 1e-6)
                g_pos, g_neg = torch.autograd.grad(terms, (pos, neg), (S, S))
                R_x = R_x + pos.detach() * g_pos + neg.detach() * g_neg
        return R_x / stabilise(x.detach(), TINY), None, None, None, None, None


def gamma_rule(module, x, out, gamma):
    """``out`` of a ``Linear`` or ``Conv2d`` ``module`` on ``x``, with the LRP backward of ``GammaRule``."""
    if isinstance(module, torch.nn.Conv2d):
        def fn(inp, w, b):
            return F.conv2d(inp, w, b, module.stride, module.padding, module.dilation, module.groups)
    else:
        fn = F.linear
    bias = None if module.bias is None else module.bias.detach()
    return GammaRule.apply(x, out, fn, module.weight.detach(), bias, gamma)
