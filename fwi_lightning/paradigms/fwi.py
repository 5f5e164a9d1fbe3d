"""Classical full-waveform inversion of one survey: the velocity grid itself is the parameter."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from fwi_lightning.errors import ConfigError
from fwi_lightning.paradigms.survey_fit import SurveyFit
from fwi_lightning.problem import Problem
from fwi_lightning.specs import LossesSpec

#: The optimiser when the YAML names none: Adam, steps of 1 % of half the velocity range.
DEFAULT_FWI_OPTIMIZER = {"name": "adam", "lr": 0.01}


class FWI(SurveyFit):
    """Classical FWI: the velocity grid [1, 1, NZ, NX] in m/s, fit to one survey by the physics loss.

    Parameter: the grid on the [-1, 1] scale of the velocity range (``problem.normalise_velocity``,
    a linear map of m/s). In m/s the data misfit's gradient is ~1e-5 per cell, so L-BFGS's
    first step (the gradient itself) moves the model by micrometres per second, its line
    search accepts that, and its change tolerance stops it; on the [-1, 1] scale the
    gradient is (v_max - v_min) / 2 times larger and L-BFGS's first step is tens of m/s.
    Adam's ``lr`` is then a fraction of half the range: 0.02 is 30 m/s over 1500-4500 m/s.

    Bounds: the grid is projected onto [-1, 1] after every optimiser step (projected
    gradient descent, the usual box constraint of FWI) and clamped in
    `current_velocity`, so even an L-BFGS line-search trial point never reaches the
    simulator outside the range (whose top pins the time step). A bounded
    reparameterisation (sigmoid) was not used: its slope vanishes near the bounds,
    rescaling the gradient cell by cell.

    Optimisers: any torch.optim class by name; ``{name: adam, lr: 0.01}`` by default, ``{name: lbfgs, lr: 1.0, max_iter: 5, line_search_fn: strong_wolfe}``
    for L-BFGS (Lightning passes the closure). Gradient clipping is the trainer's
    ``gradient_clip_val``; do not combine it with L-BFGS (a clipped gradient breaks the
    line search's curvature condition). L-BFGS needs the same objective at every
    evaluation, so it refuses a physics loss drawing a random shot subset per step.

    Frequency continuation: the ``frequency_curriculum`` callback
    (`fwi_lightning.callbacks.curricula`), the same one supervised training uses.

    Args:
        problem: survey and scaling (injected).
        losses: weighted losses, default ``{physics: 1.0}``; add ``tv`` to regularise.
        optimizer: ``{name, **kwargs}`` of a torch.optim class (default Adam, lr 0.01 of half the range).
        scheduler: ``{name, interval, monitor, **kwargs}`` or null.
        initial: the initial model (`fwi_lightning.paradigms.initial`), default
            ``{name: smoothed_truth, sigma_m: 200}``.
        figure_every_n_steps: write a model figure every N iterations (0: none).

    Raises:
        ConfigError: a bad initial-model section or figure interval; L-BFGS with a
            shot subset.
    """

    def __init__(self, problem: Problem | dict, losses: LossesSpec = None, optimizer: Optional[dict] = None,
                 scheduler: Optional[dict] = None, initial: Optional[dict] = None, figure_every_n_steps: int = 0):
        super().__init__(problem, losses=losses, optimizer=optimizer or dict(DEFAULT_FWI_OPTIMIZER), scheduler=scheduler,
                         initial=initial, figure_every_n_steps=figure_every_n_steps)

    def configure_models(self) -> None:
        """The grid on the [-1, 1] scale, at the middle of the range until `setup` sets the initial model."""
        super().configure_models()
        self.grid = nn.Parameter(torch.zeros(1, 1, *self.problem.velocity_shape))

    def configure_losses(self) -> None:
        """The weighted loss; L-BFGS with a physics loss that draws shot subsets is refused."""
        super().configure_losses()
        name = str((self.hparams.get("optimizer") or {}).get("name", "")).lower().replace("_", "").replace("-", "")
        if name != "lbfgs":
            return
        for label, loss in self.criterion.terms.items():
            subset = getattr(loss, "shots", None)
            if subset is not None and subset < self.problem.survey.n_shots:
                raise ConfigError(
                    f"L-BFGS needs the same objective at every evaluation, but loss '{label}' draws a random subset of "
                    f"{subset} shots per step; use all shots (drop its shot subset) or optimizer adam",
                    key="optimizer.name",
                )

    def current_velocity(self) -> torch.Tensor:
        return self.problem.denormalise_velocity(self.grid.clamp(-1.0, 1.0))

    def start_from(self, velocity: torch.Tensor) -> None:
        with torch.no_grad():
            self.grid.copy_(self.problem.normalise_velocity(velocity))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Project the grid onto the velocity range after the step, then the figures."""
        with torch.no_grad():
            self.grid.clamp_(-1.0, 1.0)
        super().on_train_batch_end(outputs, batch, batch_idx)
