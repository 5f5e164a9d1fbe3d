"""Collocation samplers of the ``pinn`` paradigm: points in the normalised box [-1, 1]^D.

* ``uniform``: independent uniform points, drawn on the training device.
* ``sobol``: a scrambled Sobol sequence (`torch.quasirandom.SobolEngine`), continued
  from step to step, so the points of successive steps fill the box evenly. The engine
  runs on the CPU; each step's points are then moved to the training device.
* ``adaptive``: residual-based adaptive sampling (in the manner of Wu et al. 2023's
  residual-based adaptive distribution): half of each batch uniform, half drawn from a
  pool of candidate points with probability proportional to their squared PDE residual;
  the pool's residuals are re-evaluated every `refresh_every` steps.
"""

from __future__ import annotations

from typing import Callable, Literal, Optional

import torch

SAMPLERS = ("uniform", "sobol", "adaptive")
SamplerName = Literal["uniform", "sobol", "adaptive"]


class CollocationSampler:
    """Draws collocation points [N, D] in [-1, 1]^D for one training step.

    Args:
        name: ``uniform``, ``sobol`` or ``adaptive``.
        dimensions: D, coordinates per point.
        seed: seed of the Sobol scrambling and of the adaptive pool.
        pool_size: candidate points of the adaptive sampler.
        refresh_every: steps between re-evaluations of the pool's residuals (adaptive).

    Raises:
        ValueError: an unknown sampler name (the paradigm checks it first, with its key).
    """

    def __init__(self, name: SamplerName, dimensions: int, seed: int = 0, pool_size: int = 8192, refresh_every: int = 50):
        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
        self.name, self.dimensions, self.seed = name, dimensions, seed
        self.pool_size, self.refresh_every = pool_size, refresh_every
        self._sobol = torch.quasirandom.SobolEngine(dimensions, scramble=True, seed=seed) if name == "sobol" else None
        self._pool: Optional[torch.Tensor] = None
        self._weights: Optional[torch.Tensor] = None
        self._draws = 0

    def __call__(self, count: int, device: torch.device,
                 residual: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
        """`count` points [count, D] on `device`.

        Args:
            count: points to draw.
            device: the training device.
            residual: points [M, D] -> residuals [M]; the adaptive sampler's weights (others ignore it).
        """
        self._draws += 1
        if self.name == "uniform":
            return torch.rand(count, self.dimensions, device=device) * 2.0 - 1.0
        if self.name == "sobol":
            return (self._sobol.draw(count) * 2.0 - 1.0).to(device=device, dtype=torch.float32)
        return self._adaptive(count, device, residual)

    def _adaptive(self, count: int, device: torch.device, residual: Optional[Callable]) -> torch.Tensor:
        uniform = torch.rand(count - count // 2, self.dimensions, device=device) * 2.0 - 1.0
        if residual is None:
            return torch.cat([uniform, torch.rand(count // 2, self.dimensions, device=device) * 2.0 - 1.0])
        if self._pool is None or self._pool.device != device or (self._draws - 1) % self.refresh_every == 0:
            self._pool = torch.rand(self.pool_size, self.dimensions, device=device) * 2.0 - 1.0
            values = torch.cat([residual(chunk).detach() for chunk in self._pool.split(2048)])
            self._weights = values.square() + 1e-12
        chosen = torch.multinomial(self._weights, count // 2, replacement=True)
        return torch.cat([uniform, self._pool[chosen]])
