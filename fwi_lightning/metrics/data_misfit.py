"""Data consistency of predicted velocity: re-simulate it and compare with the observed gathers."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from fwi_lightning.problem import Problem


class DataMisfit(Metric):
    """Mean relative L2 data misfit ``||d_obs - F(v_pred)|| / ||d_obs||`` over samples.

    F is the problem's forward operator (``problem.forward_operator()``): the data
    module's own simulation and processing (step buckets, band-pass, aperture masks,
    runtime knobs included), without noise. Each sample's gathers are compared as one
    vector (all shots, times and receivers). 0 means the predicted model explains the
    observed data exactly; 1 is the misfit of predicting no data.

    The operator is looked up at every update and never registered in the module
    tree, so it enters neither a checkpoint nor the parameter count.

    Args:
        problem: carries the forward operator.
    """

    higher_is_better = False
    full_state_update = False

    def __init__(self, problem: Problem, **kwargs):
        super().__init__(**kwargs)
        self.problem = problem
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, prediction: torch.Tensor, observed: torch.Tensor) -> None:
        """Add a batch: predicted velocity [B, 1, NZ, NX] in m/s, observed data [B, S, T, R]."""
        with torch.no_grad():
            simulated = self.problem.forward_operator()(prediction.detach()).to(observed.dtype)
        residual = (observed - simulated).flatten(1).norm(dim=1)
        reference = observed.flatten(1).norm(dim=1).clamp_min(torch.finfo(observed.dtype).tiny)
        self.total = self.total + (residual / reference).double().sum()
        self.count = self.count + residual.numel()

    def compute(self) -> torch.Tensor:
        """Mean relative misfit (dimensionless)."""
        return self.total / self.count
