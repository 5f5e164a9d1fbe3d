"""Domain-alignment terms of unsupervised domain adaptation, on per-sample feature vectors.

Each term compares a batch of source features [B_s, C] with a batch of target features
[B_t, C] (the network's `VelocityNetwork.embedding` of its encoder output) and is zero
when the two batches are one and the same:

* `GradientReversal` + `DomainClassifier` (DANN, Ganin & Lempitsky 2015): a small
  classifier tells source from target; the reversal layer passes features unchanged
  forward and multiplies their gradient by ``-lambda`` backward, so the encoder learns
  features the classifier cannot separate. `dann_lambda` is the usual ramp-up
  ``2 / (1 + exp(-gamma p)) - 1`` over training progress ``p`` in [0, 1].
* `mmd`: multi-kernel maximum mean discrepancy (biased V-statistic, a sum of Gaussian
  kernels whose bandwidths are multiples of the mean pairwise squared distance).
* `coral`: CORAL (Sun & Saenko 2016), the squared Frobenius distance between the two
  feature covariances, divided by ``4 C^2``.

They are not registered losses (a registered loss reads a paradigm's outputs and the
batch); the ``adaptation`` paradigm builds them from its ``methods``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

#: Bandwidth multipliers of the MMD kernels, times the mean pairwise squared distance.
DEFAULT_BANDWIDTHS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; gradient times ``-scale`` backward."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return features.view_as(features)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(features: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """`features` unchanged; in the backward pass their gradient is multiplied by ``-scale``."""
    return _ReverseGradient.apply(features, float(scale))


class GradientReversal(nn.Module):
    """The gradient-reversal layer: identity forward, gradient times ``-scale`` backward.

    Attributes:
        scale: lambda >= 0, set by the paradigm each step (the ramp-up, `dann_lambda`).
    """

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = float(scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(features, self.scale)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """DANN's ramp-up of the reversal scale: ``2 / (1 + exp(-gamma * p)) - 1``, 0 at p = 0, ~1 at p = 1.

    Args:
        progress: training progress p, clipped to [0, 1].
        gamma: steepness (10 in DANN).
    """
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


class DomainClassifier(nn.Module):
    """Features [B, C] -> one domain logit per sample [B] (target > 0), behind a gradient reversal.

    Args:
        channels: C, the feature width.
        hidden: width of the hidden layer.
    """

    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        self.reversal = GradientReversal(0.0)
        self.layers = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(self.reversal(features)).squeeze(1)


def domain_loss(classifier: DomainClassifier, source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary cross-entropy of the classifier telling source (0) from target (1), and its accuracy.

    Args:
        classifier: the domain classifier (with its reversal layer).
        source, target: features [B_s, C], [B_t, C].

    Returns:
        (loss, accuracy), scalars; the accuracy is detached.
    """
    logits = classifier(torch.cat([source, target]))
    labels = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(logits)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
    accuracy = ((logits.detach() > 0).to(labels) == labels).float().mean()
    return loss, accuracy


def _flat(features: torch.Tensor) -> torch.Tensor:
    return features.flatten(1).float()


def mmd(source: torch.Tensor, target: torch.Tensor, bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS) -> torch.Tensor:
    """Multi-kernel MMD^2 between two feature batches (biased estimate: exactly 0 for equal batches).

    ``k(x, y) = sum_i exp(-|x - y|^2 / (b_i * s))`` with ``s`` the mean pairwise squared
    distance over both batches (detached, so the bandwidths follow the features without
    being trained to grow).

    Args:
        source, target: [B_s, C], [B_t, C] (further axes are flattened).
        bandwidths: the multipliers b_i.

    Returns:
        Scalar MMD^2 >= 0 (up to rounding).
    """
    x, y = _flat(source), _flat(target)
    joint = torch.cat([x, y])
    distances = torch.cdist(joint, joint).pow(2)
    n = len(joint)
    scale = (distances.detach().sum() / max(n * (n - 1), 1)).clamp_min(1e-12)
    kernel = sum(torch.exp(-distances / (float(b) * scale)) for b in bandwidths)
    m = len(x)
    return kernel[:m, :m].mean() + kernel[m:, m:].mean() - 2.0 * kernel[:m, m:].mean()


def covariance(features: torch.Tensor) -> torch.Tensor:
    """Unbiased feature covariance [C, C] of a batch [B, C] (B >= 2)."""
    x = _flat(features)
    centred = x - x.mean(dim=0, keepdim=True)
    return centred.T @ centred / max(len(x) - 1, 1)


def coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CORAL: ``|cov(source) - cov(target)|_F^2 / (4 C^2)``; 0 for equal batches.

    Args:
        source, target: [B_s, C], [B_t, C] (further axes are flattened), B >= 2 each.
    """
    channels = _flat(source).shape[1]
    return (covariance(source) - covariance(target)).pow(2).sum() / (4.0 * channels**2)
