"""The physics loss: re-simulate the predicted velocity and compare with the observed data.

It reads only the predicted ``velocity`` and the batch's ``data``, never the labels, so
it trains on labelled and unlabelled batches alike, in any paradigm (with a weight
beside supervised losses, or alone: the ``unsupervised`` paradigm, UPFWI).

The simulation is the data's own forward operator (``problem.forward_operator()``:
numerics, step buckets, band-pass, aperture masks, runtime knobs), so the loss of the
true model on noise-free data is zero. Three cost controls change only how it is
differentiated or how much is propagated:

* ``model_gradient_sampling_interval``: deepwave stores the forward wavefield for the
  gradient every this many samples of the survey's dt (deepwave multiplies it by its
  CFL sub-steps), cutting backward memory and time. The stored wavefield must resolve
  the source's band (energy up to ``RICKER_BANDWIDTH * peak_freq``): an interval whose
  sampling period ``interval * dt`` exceeds half that band's period aliases the
  gradient and is refused. The default picks the largest interval dividing the survey's
  nt that still samples the band's top frequency `SAMPLES_PER_PERIOD` times per period
  (5 at OpenFWI's 1 ms, 15 Hz: 0.07 % gradient error, benchmarks/README.md).
* ``courant_number``: a larger Courant number means fewer CFL sub-steps (the data's
  numerics preset already sets 0.7 with ``fast``); a value other than the data's makes
  the re-simulation differ from the data by the discretisation error.
* ``shots``: propagate a random subset of this many shots per training step (all of
  them in validation and test). The subset is drawn from a generator seeded by the
  batch's sample indices (which the experiment seed determines) and a step counter kept
  in the checkpoint, never from the global RNG, so a resumed run draws as before.

Step buckets: the data module simulates each model with the fewest CFL sub-steps its own
peak velocity allows. The loss follows the data's operator by default (exactly zero at
the true model; the discretisation changes only where the predicted model's peak
crosses a bucket edge, a jump of the discretisation error's size). ``step_buckets:
false`` instead pins one discretisation at the top of the velocity range: smooth in the
prediction everywhere, at the cost of more sub-steps and a small non-zero loss at the
true model.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Optional

import numpy as np
import torch

from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.losses.base import OutputLoss
from fwi_lightning.losses.misfits import MISFITS
from fwi_lightning.physics.survey import RICKER_BANDWIDTH
from fwi_lightning.problem import Problem

#: The default gradient sampling samples the top of the source's band at least this often per period.
SAMPLES_PER_PERIOD = 5.0


def largest_unaliased_interval(dt: float, peak_freq: float) -> int:
    """The largest ``model_gradient_sampling_interval`` that does not alias a Ricker's band.

    Args:
        dt: sample interval in s. peak_freq: Ricker peak frequency in Hz.

    Returns:
        The largest k with ``k * dt <= 1 / (2 * RICKER_BANDWIDTH * peak_freq)`` (at least 1).
    """
    return max(1, math.floor(1.0 / (2.0 * RICKER_BANDWIDTH * peak_freq * dt) + 1e-9))


def default_interval(nt: int, dt: float, peak_freq: float) -> int:
    """The default interval: the largest divisor of `nt` sampling the band's top `SAMPLES_PER_PERIOD` times per period."""
    limit = max(1, math.floor(1.0 / (SAMPLES_PER_PERIOD * RICKER_BANDWIDTH * peak_freq * dt) + 1e-9))
    return max(k for k in range(1, limit + 1) if nt % k == 0)


class Physics(OutputLoss):
    """Data misfit of the re-simulated prediction: ``misfit(F(v_pred), d_obs)``.

    Args:
        problem: carries the forward operator F (injected).
        misfit: ``l2`` (relative squared L2), ``l1`` (relative L1), ``trace_l2`` (each
            trace normalised by its observed energy) or ``correlation`` (1 - zero-lag
            normalised cross-correlation per trace; ignores amplitude scale). See
            `fwi_lightning.losses.misfits`.
        shots: shots propagated per training step, drawn at random; None: all.
        model_gradient_sampling_interval: deepwave's gradient sampling interval in
            samples of the survey's dt; None: the default (module docstring).
        courant_number: Courant number of the re-simulation; None: the data's.
        step_buckets: None: as the data's operator; false: one fixed discretisation.

    Raises:
        ConfigError: an unknown misfit, a shot count outside 1..S, an aliasing or
            non-dividing sampling interval, or an unstable Courant number, keyed by the
            parameter.
    """

    reads = ("velocity",)
    reads_labels = False

    def __init__(
        self,
        problem: Problem,
        misfit: Literal["l1", "l2", "trace_l2", "correlation"] = "l2",
        shots: Optional[int] = None,
        model_gradient_sampling_interval: Optional[int] = None,
        courant_number: Optional[float] = None,
        step_buckets: Optional[bool] = None,
    ):
        super().__init__(problem)
        if misfit not in MISFITS:
            raise ConfigError(f"unknown misfit '{misfit}'; choose one of {', '.join(MISFITS)}", key="misfit")
        self.misfit = misfit
        survey = problem.survey
        if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or not 1 <= shots <= survey.n_shots):
            raise ConfigError(f"expected a number of shots in 1..{survey.n_shots}, got {shots!r}", key="shots")
        self.shots = shots
        safe = largest_unaliased_interval(survey.dt, survey.peak_freq)
        interval = model_gradient_sampling_interval
        if interval is None:
            interval = default_interval(survey.nt, survey.dt, survey.peak_freq)
        elif isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ConfigError(f"expected a whole number >= 1, got {interval!r}", key="model_gradient_sampling_interval")
        elif interval > safe:
            raise ConfigError(
                f"interval {interval} samples the wavefield every {interval * survey.dt * 1e3:g} ms, which aliases the "
                f"{survey.peak_freq:g} Hz Ricker (energy up to {RICKER_BANDWIDTH * survey.peak_freq:g} Hz) and corrupts the "
                f"gradient; use at most {safe}",
                key="model_gradient_sampling_interval",
            )
        try:
            simulator = problem.forward_operator().simulator_variant(
                courant_number=courant_number, step_buckets=step_buckets, model_gradient_sampling_interval=interval)
        except ConfigError as exc:  # the survey keys its Courant number 'survey.courant_number'
            key = "courant_number" if exc.key and exc.key.endswith("courant_number") else exc.key
            raise ConfigError(exc.message, key=key) from None
        self._variant = (simulator,)  # a tuple keeps it out of the module tree (devices, checkpoints)
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))  # subsets drawn: resumes with the checkpoint

    @property
    def simulator(self):
        """The re-simulation's `Simulator` (the data's survey with this loss's cost controls)."""
        return self._variant[0]

    def choose_shots(self, batch: Mapping[str, Any]) -> Optional[list[int]]:
        """This step's shot subset (sorted indices), or None for every shot.

        Only in training mode and when ``shots`` is below the survey's count; each call
        advances the step counter.
        """
        count = self.problem.survey.n_shots
        if not self.training or self.shots is None or self.shots >= count:
            return None
        indices = batch.get("index")
        words = [int(i) for i in indices.tolist()] if isinstance(indices, torch.Tensor) else []
        rng = np.random.default_rng(np.random.SeedSequence([int(self.draws), *words]))
        self.draws += 1
        return sorted(int(s) for s in rng.choice(count, size=self.shots, replace=False))

    def forward(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        """Predicted ``velocity`` [B, 1, NZ, NX] in m/s and the batch's ``data`` [B, S, T, R] -> scalar misfit.

        Raises:
            DataError: the batch has no observed ``data``, or the prediction or the data
                do not have the shape of the problem's survey.
        """
        prediction = outputs["velocity"]
        observed = batch.get("data")
        if observed is None:
            raise DataError("the physics loss compares re-simulated data with the batch's observed 'data', but the batch "
                            "has none; use a data module that serves 'data' or drop the physics loss")
        nz, nx = self.problem.velocity_shape
        shots, nt, receivers = self.problem.data_shape
        if prediction.ndim != 4 or tuple(prediction.shape[1:]) != (1, nz, nx):
            raise DataError(f"the physics loss got a predicted velocity of shape {list(prediction.shape)}, but the survey "
                            f"simulates [B, 1, {nz}, {nx}]; the network and the data's survey disagree")
        if tuple(observed.shape) != (len(prediction), shots, nt, receivers):
            raise DataError(f"the physics loss got observed data of shape {list(observed.shape)}, but the survey "
                            f"simulates [{len(prediction)}, {shots}, {nt}, {receivers}]; the data and its survey disagree")
        chosen = self.choose_shots(batch)
        simulated = self.problem.forward_operator()(prediction, shots=chosen, simulator=self.simulator)
        if chosen is not None:
            observed = observed[:, chosen]
        return MISFITS[self.misfit](simulated, observed.to(simulated.dtype))
