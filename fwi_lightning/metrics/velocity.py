"""Velocity metrics in OpenFWI's convention and in m/s, as torchmetrics `Metric`s.

Every metric is updated with velocity in m/s, prediction and truth [B, 1, NZ, NX], and
converts inside:

* ``mae``, ``rmse``: on velocity normalised to [-1, 1] over ``problem.velocity_range``
  (OpenFWI's tables), pooled over every cell of the set;
* ``ssim``: structural similarity on velocity scaled to [0, 1], Gaussian window
  (11 cells, sigma 1.5, borders cropped: scikit-image's
  ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``),
  averaged over samples;
* ``mae_mps``, ``rmse_mps``: the same errors in m/s.

`FamilyMetrics` repeats them per velocity family when a set mixes families.

States are updated out of place (``x = x + ...``), so a metric first used under
``torch.inference_mode`` (``trainer.validate``) still updates in a later fit.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric, MetricCollection

from fwi_lightning.precision import full_precision
from fwi_lightning.problem import Problem


def gaussian_window(window: int, sigma: float, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian weights [window] (odd `window` taps, std `sigma` in cells)."""
    offsets = torch.arange(window, dtype=dtype, device=device) - (window - 1) / 2
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def _blur(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of [N, 1, H, W], 'valid' part only: [N, 1, H - w + 1, W - w + 1].

    Only windows that lie wholly inside the image: scikit-image pads and then crops the
    ``(w - 1) / 2`` border, so the padded cells never reach its mean, and skipping both
    gives the same numbers.
    """
    x = F.conv2d(x, weights.view(1, 1, -1, 1))
    return F.conv2d(x, weights.view(1, 1, 1, -1))


def largest_window(window: int, shape: tuple[int, int]) -> int:
    """`window`, shrunk to the largest odd size that fits a grid of `shape` cells."""
    limit = min(shape)
    limit = limit if limit % 2 else limit - 1
    return max(1, min(window, limit))


def structural_similarity(x: torch.Tensor, y: torch.Tensor, *, window: int = 11, sigma: float = 1.5,
                          data_range: float = 1.0) -> torch.Tensor:
    """Mean structural similarity of each image pair, differentiable.

    Gaussian-weighted local statistics with population (not sample) covariance, averaged
    over the windows that lie wholly inside the image (the ``(window - 1) / 2`` border
    excluded): scikit-image's ``structural_similarity(gaussian_weights=True, sigma=sigma,
    use_sample_covariance=False, data_range=data_range)`` with ``truncate`` set so the
    window is `window` cells.

    The project keeps its own SSIM because torchmetrics' no longer matches scikit-image's:
    torchmetrics averages over the padded full-size map instead of cropping the border,
    so its values differ from the cropped Gaussian SSIM that OpenFWI's tables report.

    Args:
        x, y: [B, 1, H, W] images on a common scale of width `data_range`; H, W >= `window`.
        window: odd Gaussian window size in cells. sigma: its standard deviation in cells.
        data_range: max - min of the scale (1 for images in [0, 1]).

    Returns:
        [B] SSIM per pair, 1 for identical images.
    """
    if window % 2 == 0 or min(x.shape[-2:]) < window:
        raise ValueError(f"SSIM window must be odd and fit the {tuple(x.shape[-2:])} grid, got {window}")
    with torch.autocast(x.device.type, enabled=False):  # variances as E[x^2] - mu^2 need float32
        return _ssim_map_mean(full_precision(x), full_precision(y), window, sigma, data_range)


def _ssim_map_mean(x: torch.Tensor, y: torch.Tensor, window: int, sigma: float, data_range: float) -> torch.Tensor:
    """The body of `structural_similarity`, at the inputs' precision."""
    weights = gaussian_window(window, sigma, dtype=x.dtype, device=x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _blur(x, weights), _blur(y, weights)
    var_x = _blur(x * x, weights) - mu_x**2
    var_y = _blur(y * y, weights) - mu_y**2
    cov = _blur(x * y, weights) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(dim=1)


class VelocityError(Metric):
    """Pooled absolute (power 1, mean) or squared (power 2, root-mean) velocity error.

    Args:
        problem: gives the velocity range for the normalised version.
        power: 1 for MAE, 2 for RMSE.
        normalised: report on OpenFWI's [-1, 1] scale instead of m/s.
    """

    higher_is_better = False
    full_state_update = False

    def __init__(self, problem: Problem, power: int, normalised: bool, **kwargs):
        super().__init__(**kwargs)
        lo, hi = problem.velocity_range
        self.power = power
        self.scale = 2.0 / (hi - lo) if normalised else 1.0
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: prediction and target [B, 1, NZ, NX] in m/s."""
        error = (prediction.detach().double() - target.double()).abs()
        self.total = self.total + (error**self.power).sum()
        self.count = self.count + error.numel()

    def compute(self) -> torch.Tensor:
        """MAE or RMSE over every cell seen, on the chosen scale."""
        mean = self.total / self.count
        return (mean if self.power == 1 else mean.sqrt()) * self.scale


class VelocitySSIM(Metric):
    """Mean SSIM over samples of velocity scaled to [0, 1] over the velocity range.

    Args:
        problem: gives the velocity range and grid size.
        window: Gaussian window in cells (shrunk to fit small grids). sigma: in cells.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self, problem: Problem, window: int = 11, sigma: float = 1.5, **kwargs):
        super().__init__(**kwargs)
        self.problem = problem
        self.window = largest_window(window, problem.velocity_shape)
        self.sigma = sigma
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: prediction and target [B, 1, NZ, NX] in m/s."""
        unit = [(self.problem.normalise_velocity(v.detach().float()) + 1.0) / 2.0 for v in (prediction, target)]
        values = structural_similarity(*unit, window=self.window, sigma=self.sigma, data_range=1.0)
        self.total = self.total + values.sum()
        self.count = self.count + values.numel()

    def compute(self) -> torch.Tensor:
        """Mean SSIM in [-1, 1] (1: identical)."""
        return self.total / self.count


def velocity_metrics(problem: Problem) -> MetricCollection:
    """The standard velocity metrics, unprefixed: mae, rmse, ssim (OpenFWI's scales), mae_mps, rmse_mps."""
    return MetricCollection(
        {
            "mae": VelocityError(problem, power=1, normalised=True),
            "rmse": VelocityError(problem, power=2, normalised=True),
            "ssim": VelocitySSIM(problem),
            "mae_mps": VelocityError(problem, power=1, normalised=False),
            "rmse_mps": VelocityError(problem, power=2, normalised=False),
        }
    )


class FamilyMetrics(nn.Module):
    """One clone of a metric collection per velocity family, named ``<prefix><family>/<metric>``.

    Args:
        metrics: the unprefixed collection to clone (e.g. `velocity_metrics`).
        families: family labels; ``batch["family"]`` indexes this list.
        prefix: stage prefix, e.g. ``"test/"``.
    """

    def __init__(self, metrics: MetricCollection, families: Sequence[str], prefix: str):
        super().__init__()
        self.families = list(families)
        self.collections = nn.ModuleList(metrics.clone(prefix=f"{prefix}{family}/") for family in self.families)

    def update(self, prediction: torch.Tensor, target: torch.Tensor, family: torch.Tensor) -> None:
        """Add a batch: velocities [B, 1, NZ, NX] in m/s and family indices [B] (LongTensor)."""
        for index, collection in enumerate(self.collections):
            chosen = family == index
            if chosen.any():
                collection.update(prediction[chosen], target[chosen])

    def compute(self) -> dict[str, torch.Tensor]:
        """Every metric of every family that had samples (on any process)."""
        values = {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*was called before the ``update`` method.*")
            for collection in self.collections:
                values.update({k: v for k, v in collection.compute().items() if torch.isfinite(v)})
        return values

    def reset(self) -> None:
        """Clear every family's state."""
        for collection in self.collections:
            collection.reset()
