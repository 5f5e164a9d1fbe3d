"""Adversarial objectives: what the critic minimises and what the generator adds to its loss.

Scores are the critic's unbounded outputs [B] for real (label) and fake (generated)
velocity maps. Each objective defines

* ``critic_loss(real, fake)``: the critic's loss, minimised by the critic;
* ``generator_loss(fake)``: the adversarial term of the generator, minimised by the generator;
* ``wasserstein(real, fake)``: ``mean(real) - mean(fake)``, the critic's estimate of the
  Wasserstein-1 distance under ``wgan_gp`` (logged by every objective as a progress gauge);
* ``penalised``: whether the critic loss takes the gradient penalty (`gradient_penalty`).

References: Gulrajani et al. 2017 (WGAN-GP), Lim & Ye 2017 (hinge), Goodfellow et al.
2014 (non-saturating).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from fwi_lightning.errors import ConfigError, suggestion


class Objective:
    """Base of the adversarial objectives (stateless)."""

    #: Whether the critic loss adds the gradient penalty.
    penalised: bool = False
    #: Critic steps per generator step when the YAML sets none.
    default_critic_steps: int = 1

    def critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Scores [B] of real and fake maps -> the critic's scalar loss (before any penalty)."""
        raise NotImplementedError

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """Scores [B] of generated maps -> the generator's scalar adversarial loss."""
        raise NotImplementedError

    @staticmethod
    def wasserstein(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """``mean(real) - mean(fake)``: the critic's Wasserstein-1 estimate (a 1-Lipschitz critic)."""
        return real.mean() - fake.mean()


class WGANGP(Objective):
    """Wasserstein GAN with gradient penalty: the critic minimises ``mean(fake) - mean(real)``
    plus the penalty, the generator ``-mean(fake)``; 5 critic steps per generator step."""

    penalised = True
    default_critic_steps = 5

    def critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return fake.mean() - real.mean()

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


class Hinge(Objective):
    """Hinge loss: the critic minimises ``mean(relu(1 - real)) + mean(relu(1 + fake))``, the
    generator ``-mean(fake)``."""

    def critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


class NonSaturating(Objective):
    """The original GAN with the non-saturating generator loss, scores read as logits: the
    critic minimises ``softplus(-real) + softplus(fake)`` (binary cross-entropy, real = 1),
    the generator ``softplus(-fake)``."""

    def critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake).mean()


#: The objectives by YAML name.
OBJECTIVES: dict[str, type[Objective]] = {"wgan_gp": WGANGP, "hinge": Hinge, "nonsaturating": NonSaturating}


def build_objective(name: str, *, key: str = "objective") -> Objective:
    """The objective named `name` (see `OBJECTIVES`).

    Raises:
        ConfigError: unknown name.
    """
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective '{name}'{suggestion(str(name), OBJECTIVES)}; "
                          f"choose one of {', '.join(OBJECTIVES)}", key=key)
    return OBJECTIVES[name]()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     epsilon: Optional[torch.Tensor] = None) -> torch.Tensor:
    """WGAN-GP's penalty ``mean_b (||grad_x critic(x_b)||_2 - 1)^2`` at ``x = eps real + (1 - eps) fake``.

    Args:
        critic: maps [B, ...] to scores [B].
        real: real samples [B, ...] (normalised velocity [B, 1, NZ, NX]).
        fake: generated samples, the shape of `real` (detached from the generator by the caller).
        epsilon: the mixing factors [B], uniform on [0, 1) from torch's generator when None.

    Returns:
        The scalar penalty, differentiable in the critic's parameters.
    """
    if epsilon is None:
        epsilon = torch.rand(len(real), device=real.device, dtype=real.dtype)
    epsilon = epsilon.reshape(-1, *([1] * (real.dim() - 1)))
    mixed = (epsilon * real + (1.0 - epsilon) * fake).requires_grad_(True)
    (gradient,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((gradient.flatten(1).norm(dim=1) - 1.0) ** 2).mean()
