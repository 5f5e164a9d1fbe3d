"""Frequency continuation: low frequencies first, then wider bands (Bunks et al., 1995).

`BandSchedule` is the schedule alone (which band at which epoch), reusable by any
curriculum; `FrequencyContinuation` is the callback that applies it through the data
module's ``bandpass`` knob at the start of every training epoch. The knob filters the
observed data and, through ``problem.forward_operator()``, every re-simulation with
the same band, so a data misfit always compares like with like.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

from lightning.pytorch.callbacks import Callback

from fwi_lightning.errors import ConfigError

Band = Optional[tuple[Optional[float], Optional[float]]]


class BandSchedule:
    """Which [low, high] band (Hz) holds at which epoch.

    Band k holds for ``epochs[k]`` epochs, then band k + 1; the last band holds to the
    end. ``[null, null]`` (or null) means no filter.

    Args:
        bands: the bands in order, each ``[low, high]`` in Hz (either may be null), or null.
        epochs: epochs of each band but the last; one number: the same for each.

    Raises:
        ConfigError: no bands, a malformed band, or epoch counts that are not whole
            numbers >= 1 or not one per band but the last (keys ``bands``, ``band_epochs``).
    """

    def __init__(self, bands: Sequence[Optional[Sequence[Optional[float]]]], epochs: Union[int, Sequence[int]]):
        if isinstance(bands, (str, bytes)) or not isinstance(bands, Sequence) or not bands:
            raise ConfigError(f"expected a non-empty list of [low, high] bands in Hz, got {bands!r}", key="bands")
        self.bands: list[Band] = [self._band(b, i) for i, b in enumerate(bands)]
        counts = [epochs] * (len(self.bands) - 1) if isinstance(epochs, int) else list(epochs)
        if len(counts) != len(self.bands) - 1 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts):
            raise ConfigError(f"expected one whole number of epochs >= 1 per band but the last ({len(self.bands) - 1}), "
                              f"or one number for all, got {epochs!r}", key="band_epochs")
        self.starts = [sum(counts[:k]) for k in range(len(self.bands))]

    @staticmethod
    def _band(band: Optional[Sequence[Optional[float]]], index: int) -> Band:
        if band is None:
            return None
        if isinstance(band, (str, bytes)) or not isinstance(band, Sequence) or len(band) != 2:
            raise ConfigError(f"expected [low, high] in Hz (null for no limit), got {band!r}", key=f"bands.{index}")
        low, high = band
        for value in (low, high):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0):
                raise ConfigError(f"expected corners > 0 Hz or null, got {list(band)!r}", key=f"bands.{index}")
        if low is None and high is None:
            return None
        return (None if low is None else float(low), None if high is None else float(high))

    def band_at(self, epoch: int) -> Band:
        """The band of `epoch` (0-based): (low, high) Hz, or None for no filter."""
        current = 0
        for k, start in enumerate(self.starts):
            if epoch >= start:
                current = k
        return self.bands[current]


class FrequencyContinuation(Callback):
    """Set the data module's ``bandpass`` knob from a band schedule at every training epoch start.

    E.g. ``bands: [[null, 5], [null, 10], [null, null]]`` with ``band_epochs: 20``: up to
    5 Hz for epochs 0-19, up to 10 Hz for 20-39, the whole band after.

    Args:
        bands: the bands, ``[low, high]`` in Hz (either may be null), or null for none.
        band_epochs: epochs of each band but the last (one number: the same for each).

    Raises:
        ConfigError: see `BandSchedule`; at the first epoch, a data module without a
            ``bandpass`` knob.
    """

    def __init__(self, bands: list, band_epochs: Union[int, list] = 1):
        self.schedule = BandSchedule(bands, band_epochs)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or "bandpass" not in getattr(datamodule, "knobs", dict)():
            raise ConfigError("frequency continuation turns the data module's 'bandpass' knob, which this data module lacks",
                              key="bands")
        band = self.schedule.band_at(trainer.current_epoch)
        datamodule.set_knob("bandpass", None if band is None else list(band))
