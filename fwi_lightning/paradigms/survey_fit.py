"""What the paradigms fitting one survey share (``fwi``, ``deep_prior``).

They hold a single velocity model [1, 1, NZ, NX] in m/s, however parameterised
(`current_velocity`), fit it to the observed data of a `single_survey` data module by
the physics loss (``losses: {physics: 1.0}``: re-simulation through
``problem.forward_operator()``), and `forward` returns that one model for every
sample of a batch. This base adds:

* the initial model (`fwi_lightning.paradigms.initial`), set once in `setup` before
  fitting (a resumed run then gets its checkpoint's state on top);
* logging every iteration: ``train/data_misfit`` (the physics term) and, when the
  batch carries the true model, ``train/model_mae_mps`` and ``train/model_ssim``;
* figures every `figure_every_n_steps` iterations (``figures/step<N>.png``) and the
  final model as ``final_velocity.npy`` [NZ, NX] m/s in the run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from fwi_lightning import plotting, registry
from fwi_lightning.errors import ConfigError
from fwi_lightning.metrics.velocity import largest_window, structural_similarity
from fwi_lightning.paradigms.base import ParadigmBase
from fwi_lightning.paradigms.initial import check_initial, initial_velocity

#: The losses a survey fit trains on when the YAML names none: the data misfit alone.
DEFAULT_SURVEY_LOSSES = {"physics": 1.0}
#: File name of the final model in the run folder.
FINAL_VELOCITY = "final_velocity.npy"


class SurveyFit(ParadigmBase):
    """Base of the paradigms that fit one velocity model to one survey.

    A subclass implements `configure_models` (calling ``super().configure_models()``),
    `current_velocity` and `start_from`.

    Hyper-parameters read here: ``initial`` (see `fwi_lightning.paradigms.initial`),
    ``figure_every_n_steps`` (0: no figures during fitting) and ``losses``.
    """

    def configure_models(self) -> None:
        """Check the initial-model section and hold the `initialised` flag (saved in checkpoints)."""
        self.hparams["initial"] = check_initial(self.hparams.get("initial"), key="initial")
        every = self.hparams.get("figure_every_n_steps", 0)
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ConfigError(f"expected a whole number >= 0 (0: none), got {every!r}", key="figure_every_n_steps")
        self.register_buffer("initialised", torch.tensor(False))

    def configure_losses(self) -> None:
        """The weighted loss, ``{physics: 1.0}`` unless the YAML names others."""
        from fwi_lightning.losses.base import WeightedLoss

        self.criterion = WeightedLoss(self.problem, self.hparams.get("losses") or DEFAULT_SURVEY_LOSSES, key="losses",
                                      produces=self.produces)

    # -- the model --------------------------------------------------------------------

    def current_velocity(self) -> torch.Tensor:
        """The fitted model now: [1, 1, NZ, NX] float32 m/s inside the velocity range."""
        raise NotImplementedError

    def start_from(self, velocity: torch.Tensor) -> None:
        """Set the parameters so `current_velocity` starts at (or near) `velocity` [1, 1, NZ, NX] m/s."""
        raise NotImplementedError

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        """Data [B, S, T, R] -> the one fitted model for each sample, [B, 1, NZ, NX] m/s."""
        velocity = self.current_velocity()
        return velocity.expand(len(data), *velocity.shape[1:])

    def setup(self, stage: str) -> None:
        """Before the first fit: set the initial model (a resumed run's checkpoint overrides it after)."""
        if stage != "fit" or bool(self.initialised):
            return
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        # setup runs after the runner's build, which locates build errors: name the paradigm's section here
        with registry.located("model"), torch.no_grad():
            start = initial_velocity(self.hparams["initial"], self.problem, datamodule, key="initial")
        self.start_from(start.to(self.device))
        self.initialised.fill_(True)

    # -- training -------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """The weighted loss; logs it, ``train/data_misfit`` and the model error every iteration."""
        outputs = self.outputs(batch)
        total, terms = self.criterion(outputs, batch)
        self.log_losses("train", total, terms, 1)
        misfit = self.data_misfit_term(terms)
        if misfit is not None:
            self.log("train/data_misfit", misfit.detach(), on_step=True, on_epoch=False, batch_size=1)
        if batch.get("velocity") is not None:
            self.log_dict(model_errors(self.problem, outputs["velocity"][:1].detach(), batch["velocity"][:1]),
                          on_step=True, on_epoch=False, batch_size=1)
        return total

    def data_misfit_term(self, terms: Mapping[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """The unweighted value of the loss terms that re-simulate (physics losses), summed; None without one."""
        from fwi_lightning.losses.physics import Physics

        found = [terms[label] for label, loss in self.criterion.terms.items() if isinstance(loss, Physics)]
        return sum(found) if found else None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        every = self.hparams.get("figure_every_n_steps", 0)
        if every and self.global_step % every == 0:
            self.save_figure(batch, f"step{self.global_step:05d}.png", f"iteration {self.global_step}")

    def on_fit_end(self) -> None:
        """Write ``final_velocity.npy`` [NZ, NX] m/s (and a last figure) in the run folder."""
        if not self.trainer.is_global_zero:
            return
        folder = Path(self.trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            final = self.current_velocity()[0, 0].float().cpu().numpy()
        np.save(folder / FINAL_VELOCITY, final)
        if self.hparams.get("figure_every_n_steps", 0):
            batch = self.trainer.datamodule.processed() if hasattr(self.trainer.datamodule, "processed") else None
            if batch is not None:
                self.save_figure(batch, "final.png", f"final, iteration {self.global_step}")

    def save_figure(self, batch: Mapping[str, Any], filename: str, title: str) -> Path:
        """True (or initial-less: the model itself), fitted and difference velocity, under ``figures/``."""
        with torch.no_grad():
            fitted = self.current_velocity()[0].float().cpu().numpy()
        true = batch.get("velocity")
        true = fitted if true is None else true[:1, 0].float().cpu().numpy()
        data = batch["data"][:1].float().cpu().numpy()
        fig = plotting.velocity_comparison(self.problem, true, fitted, data, title)
        return plotting.save(fig, Path(self.trainer.default_root_dir) / "figures" / filename)


def model_errors(problem: Any, velocity: torch.Tensor, true: torch.Tensor) -> dict[str, torch.Tensor]:
    """``train/model_mae_mps`` (mean |v - v_true| in m/s) and ``train/model_ssim`` (SSIM on the [0, 1]
    scale of the velocity range, the project's `structural_similarity`) of [1, 1, NZ, NX] models."""
    unit = [(problem.normalise_velocity(v.float()) + 1.0) / 2.0 for v in (velocity, true)]
    window = largest_window(11, problem.velocity_shape)
    return {
        "train/model_mae_mps": (velocity - true).abs().mean(),
        "train/model_ssim": structural_similarity(*unit, window=window, sigma=1.5, data_range=1.0).mean(),
    }
