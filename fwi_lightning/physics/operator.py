"""The one forward operator: velocity models -> the gathers a data module serves.

`ForwardOperator` is the simulation (`Simulator`: numerics, CFL step buckets) followed by
the processing every batch of simulated data goes through: zero-phase band-pass,
aperture masks and, when noise seeds are given, white noise. The data module owns one
live instance and hands it out through ``problem.forward_operator()``, so everything that
re-simulates (`DataMisfit`, physics losses, FWI-style paradigms, plugins) applies exactly
the data's operator, runtime knobs included. A checkpoint stores `settings()` in
``problem.to_dict()``; `from_settings` rebuilds an equal operator from them.

Aperture masks zero traces or samples instead of removing them, so the gathers keep
their [B, S, T, R] shape and a network never changes size when the aperture does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Optional

import torch
from torch import nn

from fwi_lightning.errors import ConfigError
from fwi_lightning.physics import filters
from fwi_lightning.physics.simulator import Simulator
from fwi_lightning.physics.survey import Survey

#: The processing settings, in the order `settings()` lists them after ``step_buckets``.
PROCESSING = ("bandpass", "snr_db", "active_shots", "max_offset_m", "record_time_s")


class ForwardOperator(nn.Module):
    """Velocity [B, 1, NZ, NX] m/s -> processed gathers [B, S, T, R], differentiable.

    Args:
        simulator: the wave simulation (survey, numerics, velocity range, step buckets).
        bandpass: (low, high) zero-phase Butterworth corners in Hz, either may be None;
            None: no filter.
        snr_db: signal-to-noise power ratio in dB of the white noise `process` adds when
            given seeds; None: never noise.
        active_shots: indices (0..S-1) of the shots that are recorded; the others are
            zeroed. None: every shot.
        max_offset_m: receivers farther than this from their shot's source (in m) are
            zeroed. None: no limit.
        record_time_s: samples after this time in s are zeroed. None: the whole record.

    Raises:
        ConfigError: an invalid band, SNR, shot index, offset or record time.
    """

    def __init__(
        self,
        simulator: Simulator,
        bandpass: Optional[Sequence[Optional[float]]] = None,
        snr_db: Optional[float] = None,
        active_shots: Optional[Sequence[int]] = None,
        max_offset_m: Optional[float] = None,
        record_time_s: Optional[float] = None,
    ):
        super().__init__()
        self.simulator = simulator
        self.configure(bandpass=bandpass, snr_db=snr_db, active_shots=active_shots, max_offset_m=max_offset_m, record_time_s=record_time_s)

    @property
    def survey(self) -> Survey:
        """The simulated survey (numerics resolved, max_vel pinned)."""
        return self.simulator.survey

    # -- settings -------------------------------------------------------------------

    def configure(self, **values: Any) -> None:
        """Validate and set processing settings (names of `PROCESSING`); the rest keep their value.

        Raises:
            ConfigError: an unknown name or an invalid value, keyed by the setting's name.
        """
        for name, value in values.items():
            if name not in PROCESSING:
                raise ConfigError(f"unknown operator setting '{name}'; settings: {', '.join(PROCESSING)}", key=name)
            setattr(self, name, self._checked(name, value))

    def _checked(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        if name == "bandpass":
            return filters.check_band(value, self.survey.dt)
        if name == "active_shots":
            shots = self.survey.n_shots
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
                raise ConfigError(f"expected a non-empty list of shot indices, got {value!r}", key=name)
            if any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < shots for s in value):
                raise ConfigError(f"expected shot indices in 0..{shots - 1}, got {list(value)}", key=name)
            return sorted(set(value))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"expected a number, got {value!r}", key=name)
        if name != "snr_db" and value <= 0:
            raise ConfigError(f"expected a number > 0, got {value!r}", key=name)
        return float(value)

    def settings(self) -> dict[str, Any]:
        """Plain, JSON-serialisable settings; `from_settings` with the same survey rebuilds this operator."""
        values: dict[str, Any] = {"step_buckets": self.simulator.step_buckets}
        for name in PROCESSING:
            value = getattr(self, name)
            values[name] = list(value) if isinstance(value, (tuple, list)) else value
        return values

    @classmethod
    def from_settings(cls, survey: Survey, velocity_range: Sequence[float], settings: Mapping[str, Any]) -> "ForwardOperator":
        """Rebuild an operator from `settings()` and the survey it simulated (``problem.survey``).

        Args:
            survey: the operator's `survey` (numerics resolved, max_vel at the top of the range).
            velocity_range: (v_min, v_max) in m/s.
            settings: `settings()` output; missing entries (a checkpoint written before
                they existed) mean no step buckets and no processing.
        """
        step_buckets = bool(settings.get("step_buckets", False))
        if step_buckets:  # the survey records max_vel at the range top; buckets need it unpinned
            survey = replace(survey, max_vel=None)
        simulator = Simulator(survey, velocity_range, step_buckets=step_buckets)
        return cls(simulator, **{name: settings.get(name) for name in PROCESSING})

    # -- operator -------------------------------------------------------------------

    def simulate(self, velocity: torch.Tensor, shots: Optional[Sequence[int]] = None,
                 simulator: Optional[Simulator] = None) -> torch.Tensor:
        """Clean gathers: the simulation alone.

        Args:
            velocity: [B, 1, NZ, NX] in m/s, any device.
            shots: indices of the shots to propagate (a random subset of a physics
                loss); None: every shot.
            simulator: simulate with this `Simulator` instead of the operator's own: a
                cost-controlled variant from `simulator_variant`; None: the operator's.

        Returns:
            [B, S', T, R] raw amplitudes (S' = len(shots) or S) on the velocity's
            device, differentiable.
        """
        return (simulator or self.simulator)(velocity[:, 0], shots)

    def simulator_variant(self, *, courant_number: Optional[float] = None, step_buckets: Optional[bool] = None,
                          **options: Any) -> Simulator:
        """A `Simulator` of the same survey and velocity range with other numerics or gradient settings.

        The cost controls of physics losses (`fwi_lightning.losses.physics`) come from
        here, so their numerics are the data's except for what they override; pass the
        result to `simulate` / `forward` as ``simulator=`` to keep this operator's
        processing (and its runtime knobs).

        Args:
            courant_number: another target Courant number; None: the survey's.
            step_buckets: override the step-bucket choice (False: one fixed
                discretisation at the top of the range); None: this operator's.
            **options: `Simulator` keyword arguments to change
                (``model_gradient_sampling_interval``, ``storage_mode``,
                ``storage_compression``, ``checkpoint_segments``, ``cpu_threads``);
                the others keep this operator's values.

        Raises:
            ConfigError: an invalid Courant number (key ``survey.courant_number``) or
                simulator option.
        """
        own = self.simulator
        buckets = own.step_buckets if step_buckets is None else bool(step_buckets)
        survey = self.survey
        if courant_number is not None:
            survey = replace(survey, courant_number=courant_number)
        if buckets and own.velocity_range is not None:  # the pinned max_vel would switch buckets off
            survey = replace(survey, max_vel=None)
        settings = {
            "model_gradient_sampling_interval": own.model_gradient_sampling_interval,
            "storage_mode": own.storage_mode,
            "storage_compression": own.storage_compression,
            "checkpoint_segments": own.checkpoint_segments,
            "cpu_threads": own.cpu_threads,
        }
        unknown = [name for name in options if name not in settings]
        if unknown:
            raise ConfigError(f"unknown simulator option '{unknown[0]}'; options: {', '.join(settings)}", key=unknown[0])
        return Simulator(survey, own.velocity_range, step_buckets=buckets, **{**settings, **options})

    def process(self, clean: torch.Tensor, noise_seeds: Optional[Sequence[int]] = None,
                shots: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Band-pass, aperture masks, then (with seeds and an SNR) noise, which is masked too.

        The noise power is ``mean(d**2) / 10**(snr_db / 10)`` over the whole masked record
        (see `filters.add_noise`); with `shots`, over those shots' record.

        Args:
            clean: gathers [B, S, T, R], raw amplitudes; with `shots`, [B, len(shots), T, R].
            noise_seeds: one integer seed per sample, [B]; None: no noise.
            shots: the shot indices `clean` holds (`simulate`'s `shots`); None: every shot.

        Returns:
            Processed gathers of `clean`'s shape, same dtype and device, differentiable.
        """
        data = clean
        if self.bandpass is not None:
            data = filters.bandpass(data, self.survey.dt, *self.bandpass)
        mask = self.mask(data.device, data.dtype)
        if mask is not None and shots is not None:
            mask = mask[:, list(shots)]
        if mask is not None:
            data = data * mask
        if noise_seeds is not None and self.snr_db is not None:
            data = filters.add_noise(data, self.snr_db, [int(s) for s in noise_seeds])
            if mask is not None:
                data = data * mask
        return data

    def mask(self, device: torch.device, dtype: torch.dtype) -> Optional[torch.Tensor]:
        """The aperture as a 0/1 mask [1, S, T, R] (None: everything recorded)."""
        if self.active_shots is None and self.max_offset_m is None and self.record_time_s is None:
            return None
        s = self.survey
        mask = torch.ones(1, s.n_shots, s.nt, s.n_receivers, device=device, dtype=dtype)
        if self.active_shots is not None:
            shots = torch.zeros(s.n_shots, device=device, dtype=dtype)
            shots[self.active_shots] = 1.0
            mask = mask * shots.reshape(1, -1, 1, 1)
        if self.max_offset_m is not None:
            sources = torch.tensor(s.source_columns, dtype=torch.float64) * s.spacing
            receivers = torch.tensor(s.receiver_columns, dtype=torch.float64) * s.spacing
            near = (receivers[None, :] - sources[:, None]).abs() <= self.max_offset_m  # [S, R]
            mask = mask * near.to(device=device, dtype=dtype)[None, :, None, :]
        if self.record_time_s is not None:
            times = torch.arange(s.nt, dtype=torch.float64) * s.dt
            recorded = times <= self.record_time_s
            mask = mask * recorded.to(device=device, dtype=dtype).reshape(1, 1, -1, 1)
        return mask

    def forward(self, velocity: torch.Tensor, noise_seeds: Optional[Sequence[int]] = None,
                shots: Optional[Sequence[int]] = None, simulator: Optional[Simulator] = None) -> torch.Tensor:
        """`simulate` then `process`: velocity [B, 1, NZ, NX] m/s -> gathers [B, S, T, R].

        Args:
            velocity: [B, 1, NZ, NX] in m/s, any device.
            noise_seeds: one integer seed per sample, [B]; None: no noise.
            shots: propagate and process only these shot indices; None: every shot.
            simulator: a `simulator_variant` to simulate with; None: the operator's own.

        Returns:
            [B, S', T, R] raw amplitudes (S' = len(shots) or S), differentiable with
            respect to `velocity`.
        """
        return self.process(self.simulate(velocity, shots, simulator), noise_seeds, shots)
