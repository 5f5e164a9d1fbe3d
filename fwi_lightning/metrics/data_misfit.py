"""Data consistency of predicted velocity: re-simulate it and compare with the observed gathers."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from fwi_lightning.problem import Problem

#: torch threads of every CPU simulation of the data pipelines (`fwi_lightning.data.simulated`:
#: deepwave's threads synchronise every time step, so on a busy CPU one thread is the fast choice).
PIPELINE_CPU_THREADS = 1


class DataMisfit(Metric):
    """Mean relative L2 data misfit ``||d_obs - F(v_pred)|| / ||d_obs||`` over samples.

    F is the problem's forward operator (``problem.forward_operator()``): the data
    module's own simulation and processing (step buckets, band-pass, aperture masks,
    runtime knobs included), without noise. Each sample's gathers are compared as one
    vector (all shots, times and receivers). 0 means the predicted model explains the
    observed data exactly; 1 is the misfit of predicting no data.

    The operator is looked up at every update and never registered in the module
    tree, so it enters neither a checkpoint nor the parameter count.

    On CPU it simulates with the data pipeline's thread setting (`PIPELINE_CPU_THREADS`,
    as the data modules' simulators): the live operator has it already; one rebuilt
    from a checkpoint's settings (``fwi-run test``) simulates through a variant with it,
    built once per operator.

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
        operator = self.problem.forward_operator()
        with torch.no_grad():
            simulated = operator(prediction.detach(), simulator=self._simulator(operator)).to(observed.dtype)
        residual = (observed - simulated).flatten(1).norm(dim=1)
        reference = observed.flatten(1).norm(dim=1).clamp_min(torch.finfo(observed.dtype).tiny)
        self.total = self.total + (residual / reference).double().sum()
        self.count = self.count + residual.numel()

    def _simulator(self, operator):
        """None (the operator's own simulator) when it has a thread setting, else its variant with the pipeline's."""
        if operator.simulator.cpu_threads is not None:
            return None
        cached = self.__dict__.get("_variant")
        if cached is None or cached[0] is not operator:
            cached = (operator, operator.simulator_variant(cpu_threads=PIPELINE_CPU_THREADS))
            self.__dict__["_variant"] = cached
        return cached[1]

    def compute(self) -> torch.Tensor:
        """Mean relative misfit (dimensionless)."""
        return self.total / self.count
