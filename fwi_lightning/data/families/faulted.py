"""Faulted layered families (OpenFWI FlatFault / CurveFault-like): one normal fault.

The fault passes through a random point of the model's central half with a random dip
and dip direction; the hanging wall drops by a random throw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Optional

from fwi_lightning.data.families.layered import LayeredFamily


class FlatFault(LayeredFamily):
    """Flat layers cut by one normal fault of random dip and throw."""

    def __init__(
        self,
        shape: Sequence[int],
        spacing: float,
        velocity_range: Sequence[float],
        variant: Literal["A", "B"] = "A",
        layers: Optional[Sequence[int]] = None,
        increasing: bool = True,
        throw: Sequence[float] = (0.05, 0.3),
        dip: Sequence[float] = (30.0, 80.0),
    ):
        super().__init__(shape, spacing, velocity_range, variant=variant, layers=layers, increasing=increasing, throw=throw, dip=dip)


class CurveFault(LayeredFamily):
    """Folded layers cut by one normal fault of random dip and throw."""

    def __init__(
        self,
        shape: Sequence[int],
        spacing: float,
        velocity_range: Sequence[float],
        variant: Literal["A", "B"] = "A",
        layers: Optional[Sequence[int]] = None,
        increasing: bool = True,
        amplitude: float = 0.15,
        wavelength: Sequence[float] = (0.5, 2.0),
        throw: Sequence[float] = (0.05, 0.3),
        dip: Sequence[float] = (30.0, 80.0),
    ):
        super().__init__(
            shape, spacing, velocity_range, variant=variant, layers=layers, increasing=increasing,
            amplitude=amplitude, wavelength=wavelength, throw=throw, dip=dip,
        )
