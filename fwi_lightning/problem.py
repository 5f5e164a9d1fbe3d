"""The inverse problem a model is built for: survey, velocity range and data scaling.

A data module describes its data with a `Problem`; the framework passes it to the
paradigm, the network and the losses (the injected ``problem`` argument), so each can
size itself and normalise inside the module while every boundary stays in SI units.
A paradigm stores ``problem.to_dict()`` in its checkpoint, so a loaded model normalises
exactly as it was trained.

The problem also carries the forward operator (`fwi_lightning.physics.operator`):
`Problem.forward_operator` returns the data module's live operator, so runtime knobs
reach every user, or, after a checkpoint load, one rebuilt from the saved settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from fwi_lightning.physics.operator import ForwardOperator
    from fwi_lightning.physics.survey import Survey


@dataclass(frozen=True)
class Problem:
    """What a model maps from and to.

    Attributes:
        survey: acquisition geometry and numerics (`fwi_lightning.physics.Survey`).
        velocity_range: (v_min, v_max) in m/s; networks output within it and
            velocities are normalised to [-1, 1] over it.
        data_range: (min, max) of ``sign(d) * log1p(|d|)`` over a reference set of
            simulated gathers (OpenFWI's data normalisation, computed once by the data
            module and stored with the checkpoint).
        extra: free-form facts a paradigm may need (e.g. task targets), JSON-serialisable.
        operator_settings: `ForwardOperator.settings()` of the data's forward operator
            (step buckets, band-pass, SNR, aperture); empty: plain simulation.
        operator: the data module's live `ForwardOperator` (not serialised, not compared);
            None: `forward_operator` rebuilds one from `operator_settings`.
    """

    survey: "Survey"
    velocity_range: tuple[float, float]
    data_range: tuple[float, float]
    extra: dict[str, Any] = field(default_factory=dict)
    operator_settings: dict[str, Any] = field(default_factory=dict)
    operator: Optional["ForwardOperator"] = field(default=None, compare=False, repr=False)

    @property
    def data_shape(self) -> tuple[int, int, int]:
        """(S, T, R): shots, time samples, receivers of one gather set."""
        return (self.survey.n_shots, self.survey.nt, self.survey.n_receivers)

    @property
    def velocity_shape(self) -> tuple[int, int]:
        """(NZ, NX): depth cells, lateral cells of one velocity model."""
        return (self.survey.nz, self.survey.nx)

    def normalise_data(self, data: "torch.Tensor") -> "torch.Tensor":
        """Raw amplitudes [B, S, T, R] -> [-1, 1] via sign·log1p and min-max."""
        import torch

        lo, hi = self.data_range
        logged = torch.sign(data) * torch.log1p(data.abs())
        return 2.0 * (logged - lo) / (hi - lo) - 1.0

    def normalise_velocity(self, velocity: "torch.Tensor") -> "torch.Tensor":
        """Velocity in m/s -> [-1, 1] over `velocity_range` (OpenFWI's convention)."""
        lo, hi = self.velocity_range
        return 2.0 * (velocity - lo) / (hi - lo) - 1.0

    def denormalise_velocity(self, normalised: "torch.Tensor") -> "torch.Tensor":
        """[-1, 1] -> velocity in m/s; the inverse of `normalise_velocity`."""
        lo, hi = self.velocity_range
        return lo + (normalised + 1.0) * 0.5 * (hi - lo)

    def forward_operator(self) -> "ForwardOperator":
        """The forward operator of this problem's data: velocity [B, 1, NZ, NX] m/s -> data [B, S, T, R].

        The live operator of the data module when there is one (the same object, so
        knobs set on the data module act here too); otherwise one built from
        `operator_settings` on first call and kept.
        """
        if self.operator is not None:
            return self.operator
        rebuilt = self.__dict__.get("_rebuilt_operator")
        if rebuilt is None:
            from fwi_lightning.physics.operator import ForwardOperator

            rebuilt = ForwardOperator.from_settings(self.survey, self.velocity_range, self.operator_settings)
            object.__setattr__(self, "_rebuilt_operator", rebuilt)
        return rebuilt

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML/JSON-serialisable form (for checkpoints and summaries); the
        operator settings are the live operator's current ones when there is one."""
        return {
            "survey": self.survey.to_dict(),
            "velocity_range": [float(v) for v in self.velocity_range],
            "data_range": [float(v) for v in self.data_range],
            "extra": dict(self.extra),
            "operator": self.operator.settings() if self.operator is not None else dict(self.operator_settings),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Problem":
        """Rebuild a `Problem` from `to_dict()` output (one without ``operator`` gets a plain simulation)."""
        from fwi_lightning.physics.survey import Survey

        return cls(
            survey=Survey.from_dict(dict(values["survey"])),
            velocity_range=tuple(values["velocity_range"]),
            data_range=tuple(values["data_range"]),
            extra=dict(values.get("extra", {})),
            operator_settings=dict(values.get("operator") or {}),
        )
