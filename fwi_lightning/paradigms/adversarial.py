"""Adversarial learning (OpenFWI's VelocityGAN): a generator network and a critic on velocity maps."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch

from fwi_lightning import registry
from fwi_lightning.errors import ConfigError, DataError
from fwi_lightning.losses.adversarial import build_objective, gradient_penalty
from fwi_lightning.losses.weighting import positive_weight
from fwi_lightning.paradigms.base import OptimizerGroup, ParadigmBase
from fwi_lightning.problem import Problem
from fwi_lightning.specs import CriticSpec, LossesSpec, NetworkSpec

#: The critic when the YAML names none.
DEFAULT_CRITIC = {"name": "velocitygan"}
#: OpenFWI's VelocityGAN content loss: 100 L1 + 100 L2 on the normalised scale.
DEFAULT_CONTENT_LOSSES = {"l1": 100.0, "l2": 100.0}


class Adversarial(ParadigmBase):
    """A generator (any registered network) trained on content losses plus a critic's verdict.

    Manual optimisation with two optimisers, ``generator`` then ``critic``. Every
    training batch takes one critic step: the critic scores the true velocity and the
    generator's prediction (both normalised to [-1, 1]) and minimises the objective's
    critic loss (plus ``gp_weight`` times the gradient penalty under ``wgan_gp``). The
    generator steps on the first batch and then after every ``critic_steps`` critic
    steps, minimising the weighted content ``losses`` plus ``adversarial_weight`` times
    the objective's generator loss. The count of critic steps is a buffer
    (``critic_steps_taken``), saved in checkpoints, so a resumed run keeps the ratio.
    The paradigm produces ``velocity`` (m/s) and ``critic_score`` (the critic's score of
    it, [B]), so a content loss may read the score too (an `OutputLoss` with
    ``reads = ("critic_score",)``).

    Logged in training: ``train/loss`` (the generator's total, on generator steps),
    ``train/<term>`` (each content loss, unweighted), ``train/adversarial`` (the
    generator's adversarial term), ``train/critic_loss`` (with the penalty),
    ``train/wasserstein`` (mean real minus mean fake score) and, under ``wgan_gp``,
    ``train/gradient_penalty``. Validation and test are the shared ones on the content
    losses.

    Args:
        problem: survey and scaling (injected).
        network: the generator, ``{name: inversionnet, **params}``.
        critic: the critic, ``{name: velocitygan, **params}`` of the ``fwi_lightning.critics`` group.
        objective: ``wgan_gp`` (default), ``hinge`` or ``nonsaturating``.
        critic_steps: critic steps per generator step; default 5 for ``wgan_gp``, else 1.
        gp_weight: weight of the gradient penalty (``wgan_gp``), default 10.
        adversarial_weight: weight of the generator's adversarial term, default 1.
        losses: the content losses, name-keyed and weighted; default ``{l1: 100, l2: 100}``.
        optimizer: the generator's ``{name, **kwargs}`` (default AdamW, lr 1e-4, weight decay 1e-4).
        scheduler: the generator's scheduler, or null.
        critic_optimizer: the critic's optimiser, likewise.
        critic_scheduler: the critic's scheduler, or null.

    Raises:
        ConfigError: unknown objective, a weight or step count that is not positive, a
            critic that does not fit the grid.
    """

    produces = ("velocity", "critic_score")

    def __init__(self, problem: Problem | dict, network: NetworkSpec, critic: CriticSpec = None,
                 objective: str = "wgan_gp", critic_steps: Optional[int] = None, gp_weight: float = 10.0,
                 adversarial_weight: float = 1.0, losses: LossesSpec = None, optimizer: Optional[dict] = None,
                 scheduler: Optional[dict] = None, critic_optimizer: Optional[dict] = None,
                 critic_scheduler: Optional[dict] = None):
        super().__init__(problem, network=network, critic=critic or dict(DEFAULT_CRITIC), objective=objective,
                         critic_steps=critic_steps, gp_weight=gp_weight, adversarial_weight=adversarial_weight,
                         losses=losses or dict(DEFAULT_CONTENT_LOSSES), optimizer=optimizer, scheduler=scheduler,
                         critic_optimizer=critic_optimizer, critic_scheduler=critic_scheduler)

    def configure_models(self) -> None:
        """Build the generator, the critic and the objective; switch to manual optimisation."""
        hparams = self.hparams
        if not hparams.get("network"):
            raise ConfigError("the adversarial paradigm needs a generator network, e.g. {name: inversionnet}", key="network")
        self.objective = build_objective(hparams["objective"])
        for key in ("gp_weight", "adversarial_weight"):
            positive_weight(hparams[key], key)
        steps = hparams.get("critic_steps")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ConfigError(f"critic_steps must be a positive integer, got {steps!r}; e.g. 5 (wgan_gp) or 1",
                              key="critic_steps")
        self.critic_steps = steps if steps is not None else self.objective.default_critic_steps
        self.network = registry.build("networks", hparams["network"], key="network", problem=self.problem)
        self.critic = registry.build("critics", hparams["critic"], key="critic", problem=self.problem)
        self.register_buffer("critic_steps_taken", torch.zeros((), dtype=torch.long))
        self.automatic_optimization = False

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        """Data [B, S, T, R] raw amplitudes -> velocity [B, 1, NZ, NX] in m/s (the generator)."""
        return self.network(data)

    def outputs(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``velocity`` [B, 1, NZ, NX] in m/s and its ``critic_score`` [B]."""
        velocity = self(batch["data"])
        return {"velocity": velocity, "critic_score": self.critic(self.problem.normalise_velocity(velocity))}

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        """``generator`` (``optimizer``, ``scheduler``) and ``critic`` (``critic_optimizer``, ``critic_scheduler``)."""
        return {
            "generator": OptimizerGroup(_trainable(self.network), self.hparams.get("optimizer"),
                                        self.hparams.get("scheduler")),
            "critic": OptimizerGroup(_trainable(self.critic), self.hparams.get("critic_optimizer"),
                                     self.hparams.get("critic_scheduler"), key="critic_optimizer",
                                     scheduler_key="critic_scheduler"),
        }

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """One critic step, then a generator step when one is due (see the class)."""
        if batch.get("velocity") is None:
            raise DataError("the adversarial paradigm trains on labelled data, but a training batch has no 'velocity'; "
                            "use a labelled data module")
        size = len(batch["data"])
        real = self.problem.normalise_velocity(batch["velocity"])
        prediction = self(batch["data"])
        fake = self.problem.normalise_velocity(prediction)
        self._critic_step(real, fake.detach(), size)
        if (int(self.critic_steps_taken) - 1) % self.critic_steps == 0:
            with self.toggled_optimizer(self.optimizer("generator")):
                self._generator_step({"velocity": prediction, "critic_score": self.critic(fake)}, batch, size)

    def _critic_step(self, real: torch.Tensor, fake: torch.Tensor, size: int) -> None:
        """Normalised true and (detached) generated velocity [B, 1, NZ, NX] -> one critic step."""
        real_score, fake_score = self.critic(real), self.critic(fake)
        loss = self.objective.critic_loss(real_score, fake_score)
        logged = {"train/wasserstein": self.objective.wasserstein(real_score, fake_score).detach()}
        if self.objective.penalised:
            penalty = gradient_penalty(self.critic, real, fake)
            loss = loss + self.hparams["gp_weight"] * penalty
            logged["train/gradient_penalty"] = penalty.detach()
        self.manual_step("critic", loss)
        self.critic_steps_taken += 1
        logged["train/critic_loss"] = loss.detach()
        self.log_dict(logged, on_step=False, on_epoch=True, batch_size=size)

    def _generator_step(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any], size: int) -> None:
        """Content losses on the named `outputs` plus the weighted adversarial term of their
        ``critic_score`` -> one generator step."""
        content, terms = self.criterion(outputs, batch)
        adversarial = self.objective.generator_loss(outputs["critic_score"])
        total = content + self.hparams["adversarial_weight"] * adversarial
        self.manual_step("generator", total)
        self.log_losses("train", total.detach(), {**terms, "adversarial": adversarial}, size)


def _trainable(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]

