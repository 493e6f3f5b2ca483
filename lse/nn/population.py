"""A population of one fixed net (seed 003) evaluated at once: the weights of P individuals
stacked along a leading dimension, one forward pass for all of them.

Seed 003's genetic algorithms judge every child on the same batch of 32 images, and never train
one: a generation is P forward passes of a tiny net.  One at a time, a forward pass of the
Table-2 net over 32 images costs about as much in call overhead as in arithmetic; stacked, the
whole generation is a handful of large matrix products (on a GPU; on a CPU, one individual at a
time with the same code is fastest -- see :func:`population_accuracy`).

How (the same function as :class:`lse.nn.fixednet.FixedCNN`, equal to 1e-6 -- tested):

* the first convolution reads the same images for every individual, so it is ONE convolution
  whose filters are every individual's (P x out output channels);
* later convolutions are per individual: an im2col of the activations (k x k shifted views, the
  Keras "same" padding made explicit) and one batched matrix product over the population;
* 2x2 pooling by a reshape and a max / mean (odd sizes floor, as torch's pooling does);
* dense layers: one batched matrix product each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lse.core.fixednet import Layer, layers


def _same_pad(x: torch.Tensor, k: int) -> torch.Tensor:
    lo = (k - 1) // 2
    return F.pad(x, (lo, k - 1 - lo, lo, k - 1 - lo))


def _pool(h: torch.Tensor, how: str) -> torch.Tensor:
    """2x2 pooling of (..., H, W) with stride 2, flooring odd sizes (as max_pool2d does)."""
    if how == "none":
        return h
    H, W = h.shape[-2] // 2 * 2, h.shape[-1] // 2 * 2
    a, b, c, d = h[..., 0:H:2, 0:W:2], h[..., 0:H:2, 1:W:2], h[..., 1:H:2, 0:W:2], h[..., 1:H:2, 1:W:2]
    if how == "max":
        return torch.maximum(torch.maximum(a, b), torch.maximum(c, d))
    return (a + b + c + d) * 0.25


def _im2col(h: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C*k*k, H*W), patches in conv2d's weight order (c, i, j), "same" padded."""
    n, c, hh, ww = h.shape
    hp = _same_pad(h, k)
    cols = torch.stack([hp[:, :, i:i + hh, j:j + ww] for i in range(k) for j in range(k)], dim=2)
    return cols.reshape(n, c * k * k, hh * ww)


def population_logits(net: str, weights: dict[str, torch.Tensor], x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits (P, B, classes) of the P individuals whose tensors are ``weights[name]`` (P, *shape)
    on the batch ``x`` (B, C, H, W), float, already normalised."""
    plan: tuple[Layer, ...] = layers(net, num_classes)
    last_dense = [lay for lay in plan if lay.kind == "dense"][-1]
    p = next(iter(weights.values())).shape[0]
    b = x.shape[0]
    h: torch.Tensor | None = None  # (P, B, C, H, W) after the first layer
    for lay in plan:
        w = weights[lay.tensor]
        if lay.kind == "conv":
            if h is None:  # shared input: one convolution with every individual's filters
                out = F.conv2d(_same_pad(x, lay.kernel), w.reshape(p * lay.out, *w.shape[2:]))
                out = _pool(out.relu_(), lay.pool)  # relu and max commute; relu first is torch's order
                h = out.reshape(b, p, lay.out, *out.shape[-2:]).transpose(0, 1)
            else:
                _, _, c, hh, ww = h.shape
                cols = _im2col(h.reshape(p * b, c, hh, ww), lay.kernel)  # (P*B, C*k*k, H*W)
                cols = cols.reshape(p, b, -1, hh * ww).transpose(1, 2).reshape(p, -1, b * hh * ww)
                out = torch.bmm(w.reshape(p, lay.out, -1), cols).relu_()  # (P, out, B*H*W)
                out = out.reshape(p, lay.out, b, hh, ww).transpose(1, 2)
                h = _pool(out, lay.pool)
        else:
            if h is None:
                h = x.reshape(1, b, -1).expand(p, b, -1)
            elif h.dim() > 3:
                h = h.reshape(p, b, -1)
            h = torch.bmm(h, w.transpose(1, 2))
            if lay is not last_dense:
                h = h.relu()
    assert h is not None
    return h


@torch.no_grad()
def population_accuracy(net: str, weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                        num_classes: int, *, group: int = 0, chunk: int = 0) -> torch.Tensor:
    """Accuracy (P,) of every individual on (x, y).  ``group``: individuals per pass (0: all);
    ``chunk``: images per pass (0: all).  Activations of G individuals on B images take about
    G x B x (the net's largest layer) floats; on a CPU one individual at a time is fastest (its
    activations stay in cache), on a GPU the whole population at once."""
    p = next(iter(weights.values())).shape[0]
    g, step = group or p, chunk or x.shape[0]
    correct = torch.zeros(p, device=x.device)
    for j in range(0, p, g):
        part = {n: w[j:j + g] for n, w in weights.items()}
        for i in range(0, x.shape[0], step):
            logits = population_logits(net, part, x[i:i + step], num_classes)
            correct[j:j + g] += (logits.argmax(-1) == y[i:i + step].unsqueeze(0)).sum(1)
    return correct / max(1, x.shape[0])
