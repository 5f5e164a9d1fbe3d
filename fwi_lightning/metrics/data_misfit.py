"""Data consistency of predicted velocity: re-simulate it and compare with the observed gathers."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from fwi_lightning.problem import Problem


class DataMisfit(Metric):
    """Mean relative L2 data misfit ``||d_obs - F(v_pred)|| / ||d_obs||`` over samples.

    F is the deepwave `Simulator` of the problem's survey, its time step pinned by the
    top of the velocity range as in the data modules; each sample's gathers are
    compared as one vector (all shots, times and receivers). 0 means the predicted
    model explains the observed data exactly; 1 is the misfit of predicting no data.

    The simulator is built on first use on the prediction's device and kept outside
    the module tree, so it never enters a checkpoint or the parameter count.

    Args:
        problem: its survey sets the simulator (same geometry and numerics as the data).
    """

    higher_is_better = False
    full_state_update = False

    def __init__(self, problem: Problem, **kwargs):
        super().__init__(**kwargs)
        self.survey = problem.survey
        self.velocity_range = problem.velocity_range
        self._simulators: dict[str, torch.nn.Module] = {}
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, prediction: torch.Tensor, observed: torch.Tensor) -> None:
        """Add a batch: predicted velocity [B, 1, NZ, NX] in m/s, observed data [B, S, T, R]."""
        with torch.no_grad():
            simulated = self.simulator(prediction.device)(prediction.detach()[:, 0]).to(observed.dtype)
        residual = (observed - simulated).flatten(1).norm(dim=1)
        reference = observed.flatten(1).norm(dim=1).clamp_min(torch.finfo(observed.dtype).tiny)
        self.total = self.total + (residual / reference).double().sum()
        self.count = self.count + residual.numel()

    def simulator(self, device: torch.device) -> torch.nn.Module:
        """The survey's `Simulator` on `device` (velocity [B, NZ, NX] m/s -> data [B, S, T, R])."""
        if str(device) not in self._simulators:
            from fwi_lightning.physics.simulator import Simulator

            self._simulators[str(device)] = Simulator(self.survey, velocity_range=self.velocity_range).to(device)
        return self._simulators[str(device)]

    def compute(self) -> torch.Tensor:
        """Mean relative misfit (dimensionless)."""
        return self.total / self.count
