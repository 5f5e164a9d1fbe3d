"""Classical full-waveform inversion of one survey: the velocity grid itself is the parameter."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from fwi_lightning.errors import ConfigError
from fwi_lightning.paradigms.survey_fit import SurveyFit
from fwi_lightning.problem import Problem
from fwi_lightning.specs import LossesSpec

#: The optimiser when the YAML names none: Adam, steps of about 10 m/s per iteration.
DEFAULT_FWI_OPTIMIZER = {"name": "adam", "lr": 10.0}


class FWI(SurveyFit):
    """Classical FWI: the velocity grid [1, 1, NZ, NX] in m/s, fit to one survey by the physics loss.

    Bounds: the grid is a plain parameter in m/s, projected onto the velocity range
    after every optimiser step (projected gradient descent, the usual box constraint
    of FWI) and clamped in `current_velocity`, so even an L-BFGS line-search trial
    point never reaches the simulator outside the range (whose top pins the time step).
    A bounded reparameterisation (sigmoid) was not used: it rescales the gradient by
    its slope, which vanishes near the bounds, and makes the learning rate no longer a
    step in m/s.

    Optimisers: any torch.optim class by name; ``{name: adam, lr: 10.0}`` (m/s per step)
    by default, ``{name: lbfgs, lr: 1.0, max_iter: 5, line_search_fn: strong_wolfe}``
    for L-BFGS (Lightning passes the closure). Gradient clipping is the trainer's
    ``gradient_clip_val``; do not combine it with L-BFGS (a clipped gradient breaks the
    line search's curvature condition). L-BFGS needs the same objective at every
    evaluation, so it refuses a physics loss drawing a random shot subset per step.

    Frequency continuation: the ``frequency_continuation`` callback
    (`fwi_lightning.callbacks.frequency`).

    Args:
        problem: survey and scaling (injected).
        losses: weighted losses, default ``{physics: 1.0}``; add ``tv`` to regularise.
        optimizer: ``{name, **kwargs}`` of a torch.optim class (default Adam, lr 10 m/s).
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
        """The velocity grid, at the middle of the range until `setup` sets the initial model."""
        super().configure_models()
        lo, hi = self.problem.velocity_range
        self.velocity = nn.Parameter(torch.full((1, 1, *self.problem.velocity_shape), 0.5 * (lo + hi)))

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
        lo, hi = self.problem.velocity_range
        return self.velocity.clamp(lo, hi)

    def start_from(self, velocity: torch.Tensor) -> None:
        with torch.no_grad():
            self.velocity.copy_(velocity)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Project the grid onto the velocity range after the step, then the figures."""
        with torch.no_grad():
            self.velocity.clamp_(*self.problem.velocity_range)
        super().on_train_batch_end(outputs, batch, batch_idx)
