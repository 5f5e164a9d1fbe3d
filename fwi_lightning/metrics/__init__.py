"""Evaluation metrics (torchmetrics): velocity errors in OpenFWI's convention and in m/s,
SSIM, per-family breakdowns and the re-simulation data misfit."""

from fwi_lightning.metrics.velocity import (
    FamilyMetrics,
    VelocityError,
    VelocitySSIM,
    structural_similarity,
    velocity_metrics,
)

__all__ = ["FamilyMetrics", "VelocityError", "VelocitySSIM", "structural_similarity", "velocity_metrics"]
