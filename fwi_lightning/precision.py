"""Mixed precision: the one rule for tensors that must stay in full precision.

Under ``trainer.precision=16-mixed`` or ``bf16-mixed`` autocast hands half-precision
tensors to code that cannot take them (deepwave has no half kernels) or that loses too
much in them (a velocity in bfloat16 moves in steps of up to 16 m/s; SSIM's variances
``E[x^2] - mu^2`` cancel). Such code casts its inputs up with `full_precision`.
"""

from __future__ import annotations

import torch

#: The half-precision dtypes autocast produces.
HALF_DTYPES = (torch.float16, torch.bfloat16)


def full_precision(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` in float32 if it is half precision, else unchanged (float64 stays float64)."""
    return tensor.float() if tensor.dtype in HALF_DTYPES else tensor
