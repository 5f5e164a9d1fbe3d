"""The differentiable forward model: velocity models -> shot gathers, with deepwave.

One `Simulator` call propagates a whole batch of models in ONE ``deepwave.scalar``
call: deepwave takes a batch of models as one model per shot, so each model is
repeated for its S shots. deepwave derives the internal time step (CFL sub-steps per
sample) and the absorbing layer from ``max_vel``; left to itself it reads the maximum
of the whole batch, so one fast model would silently sub-step (and change the numbers
of) every other model in it. The simulator therefore pins ``max_vel``, in one of two
ways, and a model's gathers never depend on the batch it is in:

- ``step_buckets=False`` (default): the top of the velocity range, for every model. One
  fixed discretisation: the choice for gradients (FWI, physics losses).
- ``step_buckets=True``: each model gets the fewest sub-steps its own maximum allows;
  ``max_vel`` is pinned to the top of that sub-step count's velocity bucket, and the
  batch is split into one deepwave call per bucket. With ``accurate`` numerics at 10 m
  and 1 ms, models up to 4243 m/s then take one step per sample instead of two. The
  data pipelines use it; the discretisation then jumps where a model crosses a bucket
  edge, so prefer the default when differentiating.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Literal, Optional

import deepwave
import torch
from torch import nn

from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.physics import wavelets
from fwi_lightning.physics.survey import Survey
from fwi_lightning.precision import full_precision

#: Relative slack above the velocity range before a model is refused (float rounding
#: of a network's bounded output may land a hair above the top of the range).
RANGE_TOLERANCE = 1e-4

#: deepwave's notice that a record's sample interval takes several CFL sub-steps (a regex of
#: its start): expected whenever a survey records coarsely, so it is silenced.
COARSE_RECORD_WARNING = r"dt~\S+ exceeds the stable internal time step"

#: Bucket tops sit this far (relatively) below the exact CFL limit, so float rounding
#: in deepwave's own step computation cannot add a sub-step.
BUCKET_MARGIN = 1e-6


class Simulator(nn.Module):
    """Scalar (constant-density acoustic) wave simulation of a survey over velocity models.

    Args:
        survey: geometry and numerics (`Survey`).
        velocity_range: (v_min, v_max) in m/s the models must lie in; pins `max_vel`
            to v_max unless the survey sets it. None: no range check, and deepwave
            reads max_vel from each batch.
        numerics: a numerics preset (``"fast"``, ``"accurate"``) filled into the
            survey's unset numerics fields; None: the survey as given.
        model_gradient_sampling_interval: time steps between contributions to the
            velocity gradient (memory lever; must divide survey.nt).
        storage_mode: where deepwave keeps the wavefield history for the gradient
            (``"device"``, ``"cpu"``, ``"disk"``, ``"none"``); None: deepwave's default.
        storage_compression: 8-bit lossy compression of that history (changes the
            gradient by ~0.2-4 %).
        checkpoint_segments: split time into this many re-computed segments to cut
            backward memory; None: no checkpointing.
        step_buckets: pin max_vel per model to the top of its CFL sub-step bucket
            instead of to the top of the range (see the module docstring); ignored
            when the survey sets max_vel or there is no velocity range.
        cpu_threads: torch threads deepwave's forward may use on CPU (None: torch's
            setting). deepwave synchronises its threads at every time step, so on a
            busy CPU two threads can run 70x slower than one (measured: 17 s against
            0.25 s per OpenFWI-size model with 5 other processes on 2 cores); the data
            pipelines use 1 and spread work over processes instead.

    Raises:
        ConfigError: an invalid velocity range for the survey, or an interval that does
            not divide survey.nt.
    """

    def __init__(
        self,
        survey: Survey,
        velocity_range: Optional[Sequence[float]] = None,
        numerics: Optional[str] = None,
        *,
        model_gradient_sampling_interval: int = 1,
        storage_mode: Optional[Literal["device", "cpu", "disk", "none"]] = None,
        storage_compression: bool = False,
        checkpoint_segments: Optional[int] = None,
        step_buckets: bool = False,
        cpu_threads: Optional[int] = None,
    ):
        super().__init__()
        survey = survey.with_numerics(numerics)
        self.step_buckets = bool(step_buckets) and survey.max_vel is None and velocity_range is not None
        if velocity_range is not None:
            v_min, v_max = (float(v) for v in velocity_range)
            survey.check_velocity_range(v_min, v_max)
            self.velocity_range: Optional[tuple[float, float]] = (v_min, v_max)
            if survey.max_vel is None:
                survey = replace(survey, max_vel=v_max)
        else:
            self.velocity_range = None
        if model_gradient_sampling_interval < 1 or survey.nt % model_gradient_sampling_interval:
            raise ConfigError(
                f"model_gradient_sampling_interval={model_gradient_sampling_interval} must be >= 1 and divide "
                f"survey.nt={survey.nt}",
                key="model_gradient_sampling_interval",
            )
        if checkpoint_segments is not None and checkpoint_segments < 1:
            raise ConfigError(f"expected a number of segments >= 1, got {checkpoint_segments}", key="checkpoint_segments")
        self.survey = survey
        self.model_gradient_sampling_interval = model_gradient_sampling_interval
        self.storage_mode = storage_mode
        self.storage_compression = storage_compression
        self.checkpoint_segments = checkpoint_segments
        self.cpu_threads = cpu_threads
        shots, receivers = survey.source_columns, survey.receiver_columns
        sources = torch.tensor([[[survey.source_row, col]] for col in shots], dtype=torch.long)
        rec = torch.tensor([[survey.receiver_row, col] for col in receivers], dtype=torch.long)
        self.register_buffer("source_locations", sources, persistent=False)  # [S, 1, 2] cells
        self.register_buffer("receiver_locations", rec.expand(len(shots), -1, -1).contiguous(), persistent=False)  # [S, R, 2]
        self.register_buffer("wavelet", wavelets.ricker(survey), persistent=False)  # [T]

    def deepwave_options(self) -> dict:
        """The keyword arguments this simulator passes to ``deepwave.scalar`` besides the arrays and max_vel."""
        s = self.survey
        options = {
            "accuracy": s.accuracy,
            "pml_freq": s.peak_freq,
            "model_gradient_sampling_interval": self.model_gradient_sampling_interval,
            "storage_compression": self.storage_compression,
        }
        optional = {
            "pml_width": s.pml_width,
            "courant_number": s.courant_number,
            "storage_mode": self.storage_mode,
            "checkpoint_segments": self.checkpoint_segments,
        }
        options.update({k: v for k, v in optional.items() if v is not None})
        return options

    def check_velocity(self, velocity: torch.Tensor) -> None:
        """Refuse models that are mis-shaped, not finite, non-positive or out of range.

        Raises:
            DataError: naming the first offending sample and the expected range.
        """
        expected = (self.survey.nz, self.survey.nx)
        if velocity.ndim != 3 or tuple(velocity.shape[1:]) != expected:
            raise DataError(f"velocity has shape {list(velocity.shape)}, expected [B, {expected[0]}, {expected[1]}] (survey nz, nx)")
        v = velocity.detach().flatten(1)
        lo, hi = v.amin(dim=1), v.amax(dim=1)
        finite = torch.isfinite(v).all(dim=1)
        v_min, v_max = self.velocity_range if self.velocity_range is not None else (0.0, float("inf"))
        ok = finite & (lo > 0) & (lo >= v_min * (1 - RANGE_TOLERANCE)) & (hi <= v_max * (1 + RANGE_TOLERANCE))
        if bool(ok.all()):
            return
        b = int((~ok).nonzero()[0])
        if not bool(finite[b]):
            raise DataError(f"velocity sample {b} contains NaN or infinite values")
        raise DataError(
            f"velocity sample {b} spans {float(lo[b]):.6g} to {float(hi[b]):.6g} m/s, outside the allowed range "
            f"({v_min:g}, {v_max:g}] m/s; clamp the model or widen velocity_range"
        )

    @contextlib.contextmanager
    def _threads(self, device: torch.device) -> Iterator[None]:
        """Limit torch (and so deepwave) to `cpu_threads` threads for a CPU call."""
        previous = torch.get_num_threads()
        limit = device.type == "cpu" and self.cpu_threads is not None and self.cpu_threads != previous
        if limit:
            torch.set_num_threads(self.cpu_threads)
        try:
            yield
        finally:
            if limit:
                torch.set_num_threads(previous)

    def bucket_max_vels(self, peaks: Sequence[float]) -> list[float]:
        """The pinned max_vel in m/s of each model, from its peak velocity in m/s.

        Without step buckets every model gets the survey's max_vel (None: deepwave
        reads the batch). With them a model peaking at v gets the top of its bucket,
        ``k * C * dx / (sqrt(2) * dt)`` for the fewest sub-steps k that cover v, capped
        at the top of the range.
        """
        if not self.step_buckets:
            return [self.survey.max_vel] * len(peaks)
        one_step = self.survey.resolved_courant_number() * self.survey.spacing / (2.0**0.5 * self.survey.dt)
        v_max = self.velocity_range[1]
        tops = []
        for peak in peaks:
            steps = max(1, math.ceil(peak / (one_step * (1 - BUCKET_MARGIN))))
            tops.append(min(v_max, steps * one_step * (1 - BUCKET_MARGIN)))
        return tops

    def forward(self, velocity: torch.Tensor, shots: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Simulate the survey over a batch of velocity models.

        Args:
            velocity: [B, NZ, NX] in m/s, on any device; float32 or float64. Half
                precision (a network's output under mixed precision) is simulated in
                float32: deepwave has no half-precision kernels, and autocast does not
                reach into it.
            shots: indices (0..S-1) of the shots to propagate, in the order wanted
                (a physics loss's random subset); None: every shot. A shot's gathers
                do not depend on which other shots are propagated with it.

        Returns:
            Receiver data [B, S', T, R] (shot, time, receiver), S' = len(shots) or S,
            raw amplitudes, on the velocity's device, float32 or float64,
            differentiable with respect to `velocity`.

        Raises:
            DataError: a shot index outside 0..S-1 (see also `check_velocity`).
        """
        velocity = full_precision(velocity)
        self.check_velocity(velocity)
        tops = self.bucket_max_vels(velocity.detach().flatten(1).amax(dim=1).tolist() if self.step_buckets else [None] * len(velocity))
        groups: dict[Optional[float], list[int]] = {}
        for b, top in enumerate(tops):
            groups.setdefault(top, []).append(b)
        shots = self.check_shots(shots)
        if len(groups) == 1:
            return self._propagate(velocity, tops[0], shots)
        order = [b for members in groups.values() for b in members]
        parts = [self._propagate(velocity[members], top, shots) for top, members in groups.items()]
        inverse = torch.argsort(torch.tensor(order, device=velocity.device))
        return torch.cat(parts)[inverse]

    def check_shots(self, shots: Optional[Sequence[int]]) -> Optional[list[int]]:
        """`shots` as a list of valid shot indices (None stays None: every shot).

        Raises:
            DataError: an empty list or an index outside 0..S-1.
        """
        if shots is None:
            return None
        chosen, count = [int(s) for s in shots], self.survey.n_shots
        if not chosen or any(not 0 <= s < count for s in chosen):
            raise DataError(f"expected shot indices in 0..{count - 1}, got {chosen}")
        return chosen

    def _propagate(self, velocity: torch.Tensor, max_vel: Optional[float], chosen: Optional[list[int]] = None) -> torch.Tensor:
        """One deepwave call for [B, NZ, NX] m/s models with one max_vel -> [B, S', T, R]
        (the shots `chosen`, None: all)."""
        sources, receivers = self.source_locations, self.receiver_locations
        if chosen is not None:
            sources, receivers = sources[chosen], receivers[chosen]
        batch, shots = velocity.shape[0], len(sources)
        device = velocity.device
        models = velocity.repeat_interleave(shots, dim=0)  # [B*S, NZ, NX]
        amplitudes = self.wavelet.to(device=device, dtype=velocity.dtype).expand(batch * shots, 1, -1)
        options = self.deepwave_options()
        if max_vel is not None:
            options["max_vel"] = max_vel
        with self._threads(device), warnings.catch_warnings():
            # a coarse record (a few CFL sub-steps per output sample) is asked for on purpose: deepwave's
            # mild-ratio notice is noise here; its "greatly exceeds" warning (a units mistake) still shows
            warnings.filterwarnings("ignore", message=COARSE_RECORD_WARNING, category=UserWarning)
            out = deepwave.scalar(
                models,
                self.survey.spacing,
                self.survey.dt,
                source_amplitudes=amplitudes,
                source_locations=sources.to(device).repeat(batch, 1, 1),
                receiver_locations=receivers.to(device).repeat(batch, 1, 1),
                **options,
            )
        data = out.receiver_amplitudes  # [B*S, R, T]
        return data.reshape(batch, shots, data.shape[1], data.shape[2]).transpose(2, 3).contiguous()

    def snapshots(self, velocity: torch.Tensor, steps: Sequence[int], shot: int = 0) -> torch.Tensor:
        """Wavefields of one shot at chosen time samples: what deepwave holds after that many steps.

        deepwave returns the wavefield at the end of a run, so each snapshot is a run of
        that many samples (the source wavelet cut to them), with this simulator's
        numerics and pinned max_vel. Snapshot ``k`` is the wavefield at ``t = k * dt``:
        at a receiver's cell it equals sample ``k`` of that receiver's trace from
        `forward` (``tests/test_pinn.py`` checks this).

        Args:
            velocity: [B, NZ, NX] in m/s.
            steps: time sample indices k, each in 1..survey.nt.
            shot: index of the shot whose source fires.

        Returns:
            [B, K, NZ, NX] wavefield amplitudes (the receivers' unit) on the model grid
            (the absorbing layer cropped), K = len(steps), on the velocity's device.

        Raises:
            DataError: a step outside 1..nt or a shot outside 0..S-1 (and see `check_velocity`).
        """
        velocity = full_precision(velocity)
        self.check_velocity(velocity)
        (shot,) = self.check_shots([shot])
        nt = self.survey.nt
        if not steps or any(isinstance(k, bool) or not 1 <= int(k) <= nt for k in steps):
            raise DataError(f"expected time samples in 1..{nt}, got {list(steps)}")
        tops = self.bucket_max_vels(velocity.detach().flatten(1).amax(dim=1).tolist() if self.step_buckets else [None] * len(velocity))
        device = velocity.device
        options = self.deepwave_options()
        nz, nx = velocity.shape[1:]
        out = []
        for b in range(len(velocity)):
            if tops[b] is not None:
                options["max_vel"] = tops[b]
            frames = []
            for k in steps:
                with self._threads(device):
                    result = deepwave.scalar(
                        velocity[b : b + 1],
                        self.survey.spacing,
                        self.survey.dt,
                        source_amplitudes=self.wavelet.to(device=device, dtype=velocity.dtype)[None, None],
                        source_locations=self.source_locations[shot : shot + 1].to(device),
                        nt=int(k),
                        **options,
                    )
                field = result.wavefield_0[0]
                top, left = (field.shape[0] - nz) // 2, (field.shape[1] - nx) // 2
                frames.append(field[top : top + nz, left : left + nx])
            out.append(torch.stack(frames))
        return torch.stack(out)
