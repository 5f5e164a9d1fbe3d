"""Task weightings of the multitask paradigm: per-task losses -> the loss to back-propagate.

* ``fixed``: ``sum_i w_i L_i`` with the configured weights.
* ``uncertainty`` (Kendall, Gal & Cipolla 2018, homoscedastic uncertainty): learned
  log-variances ``s_i`` (started at ``-log w_i``), ``sum_i exp(-s_i) L_i + s_i``; the
  weight of task i is ``exp(-s_i)``.
* ``gradnorm`` (Chen et al. 2018): learned weights ``w_i`` (started at the configured
  ones, rescaled to sum to the number of tasks T and rescaled so after every step). With
  ``G_i = w_i ||dL_i/dz||`` the gradient norm of task i at the shared features z (the
  encoder's output, standing for the paper's last shared layer), ``r_i`` the task's
  inverse training rate ``(L_i / L_i(0)) / mean_j (L_j / L_j(0))`` and ``alpha`` the
  asymmetry, the weights minimise ``sum_i |G_i - mean_j(G_j) r_i^alpha|`` (target held
  constant) while the network minimises ``sum_i w_i L_i`` (weights held constant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from fwi_lightning.errors import ConfigError, suggestion

#: The smallest GradNorm weight before rescaling (keeps every weight positive).
WEIGHT_FLOOR = 1e-3


@dataclass
class Combined:
    """What a weighting makes of the task losses.

    Attributes:
        loss: the scalar to back-propagate.
        weighted: ``sum_i weight_i L_i``, the weighted task loss (logged as the training loss).
        weights: the weight of each task, detached.
        extra: further values to log by name (e.g. GradNorm's balancing loss).
    """

    loss: torch.Tensor
    weighted: torch.Tensor
    weights: dict[str, torch.Tensor]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class TaskWeighting(nn.Module):
    """Base of the weightings.

    Args:
        weights: the configured weight of each task, by name (positive numbers).
    """

    def __init__(self, weights: Mapping[str, float]):
        super().__init__()
        self.tasks = list(weights)
        self.initial = torch.tensor([float(weights[t]) for t in self.tasks])

    def forward(self, losses: Mapping[str, torch.Tensor], features: Any) -> Combined:
        """Task losses by name (scalars) and the shared features (a tensor or list of
        tensors the losses depend on; GradNorm differentiates at them) -> `Combined`."""
        raise NotImplementedError

    def _stack(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([losses[t] for t in self.tasks])

    def _named(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: w for t, w in zip(self.tasks, weights.detach())}


class Fixed(TaskWeighting):
    """``sum_i w_i L_i`` with the configured weights."""

    def forward(self, losses: Mapping[str, torch.Tensor], features: Any) -> Combined:
        stacked = self._stack(losses)
        weights = self.initial.to(stacked)
        total = (weights * stacked).sum()
        return Combined(total, total, self._named(weights))


class Uncertainty(TaskWeighting):
    """Kendall et al.'s learned homoscedastic weighting: ``sum_i exp(-s_i) L_i + s_i``.

    Attributes:
        log_variances: the learned ``s_i`` [T], started at ``-log w_i``.
    """

    def __init__(self, weights: Mapping[str, float]):
        super().__init__(weights)
        self.log_variances = nn.Parameter(-torch.log(self.initial))

    def forward(self, losses: Mapping[str, torch.Tensor], features: Any) -> Combined:
        stacked = self._stack(losses)
        weights = torch.exp(-self.log_variances.to(stacked))
        weighted = (weights * stacked).sum()
        return Combined(weighted + self.log_variances.sum(), weighted.detach(), self._named(weights))


class GradNorm(TaskWeighting):
    """Chen et al.'s GradNorm (see the module docstring).

    Attributes:
        task_weights: the learned ``w_i`` [T].
        initial_losses: ``L_i(0)`` [T], recorded at the first training call (NaN before),
            saved in checkpoints.

    Args:
        weights: the configured starting weights.
        alpha: the asymmetry; 0 equalises the gradient norms, larger values push the
            tasks that train slower harder.
    """

    def __init__(self, weights: Mapping[str, float], alpha: float = 1.5):
        super().__init__(weights)
        self.alpha = float(alpha)
        count = len(self.tasks)
        self.task_weights = nn.Parameter(self.initial * count / self.initial.sum())
        self.register_buffer("initial_losses", torch.full((count,), math.nan))

    def forward(self, losses: Mapping[str, torch.Tensor], features: Any) -> Combined:
        stacked = self._stack(losses)
        count = len(self.tasks)
        if self.training:
            with torch.no_grad():
                self.task_weights.clamp_(min=WEIGHT_FLOOR).mul_(count / self.task_weights.sum())
                if torch.isnan(self.initial_losses).any():
                    self.initial_losses.copy_(stacked.detach())
        weights = self.task_weights.to(stacked)
        weighted = (weights * stacked).sum()
        if not self.training or not torch.is_grad_enabled():
            return Combined(weighted, weighted.detach(), self._named(weights))
        norms = torch.stack([_gradient_norm(loss, features) for loss in stacked])
        balance = self.balance_loss(weights, norms, stacked.detach())
        return Combined((weights.detach() * stacked).sum() + balance, weighted.detach(), self._named(weights),
                        {"gradnorm_loss": balance.detach()})

    def balance_loss(self, weights: torch.Tensor, norms: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """``sum_i |w_i g_i - mean_j(w_j g_j) r_i^alpha|`` with the target constant.

        Args:
            weights: ``w_i`` [T], differentiable.
            norms: the unweighted gradient norms ``g_i = ||dL_i/dz||`` [T], constant.
            losses: the current losses ``L_i`` [T], constant.
        """
        weighted_norms = weights * norms
        ratios = losses / self.initial_losses.to(losses)
        inverse_rates = ratios / ratios.mean()
        target = (weighted_norms.mean() * inverse_rates**self.alpha).detach()
        return (weighted_norms - target).abs().sum()


def _gradient_norm(loss: torch.Tensor, features: Any) -> torch.Tensor:
    """``||dloss/dz||_2`` over every tensor of the features (constant: no graph kept)."""
    tensors = [f for f in (features if isinstance(features, (list, tuple)) else [features]) if f.requires_grad]
    gradients = torch.autograd.grad(loss, tensors, retain_graph=True, allow_unused=True)
    squares = [g.pow(2).sum() for g in gradients if g is not None]
    return torch.sqrt(torch.stack(squares).sum()) if squares else loss.new_zeros(())


#: The weightings by YAML name.
WEIGHTINGS: dict[str, type[TaskWeighting]] = {"fixed": Fixed, "uncertainty": Uncertainty, "gradnorm": GradNorm}


def build_weighting(name: str, weights: Mapping[str, float], *, alpha: float, key: str = "weighting") -> TaskWeighting:
    """The weighting named `name` over tasks with the configured `weights`.

    Raises:
        ConfigError: unknown name, or ``gradnorm`` with fewer than two tasks.
    """
    if name not in WEIGHTINGS:
        raise ConfigError(f"unknown weighting '{name}'{suggestion(str(name), WEIGHTINGS)}; "
                          f"choose one of {', '.join(WEIGHTINGS)}", key=key)
    if name == "gradnorm":
        if len(weights) < 2:
            raise ConfigError(f"gradnorm balances several tasks but heads has only {', '.join(weights) or 'none'}; "
                              "add a head (e.g. interfaces: 1.0) or use weighting: fixed", key=key)
        return GradNorm(weights, alpha=alpha)
    return WEIGHTINGS[name](weights)


def positive_weight(value: Any, key: str) -> float:
    """`value` as a float when it is a positive number.

    Raises:
        ConfigError: at `key`, naming the value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        leaf = key.rsplit(".", 1)[-1]
        raise ConfigError(f"'{leaf}' must be a positive number, got {value!r}; set e.g. {leaf}: 1.0", key=key)
    return float(value)


__all__ = ["Combined", "TaskWeighting", "Fixed", "Uncertainty", "GradNorm", "WEIGHTINGS", "build_weighting",
           "positive_weight"]
