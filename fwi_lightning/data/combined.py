"""A source + target stream: two whole data modules, one batch of each per training step.

Domain adaptation trains on a labelled *source* (e.g. simulated FlatVel) while it sees
a *target* (e.g. OpenFWI files, field data) whose labels must not reach a training
loss. `SourceTargetDataModule` builds both data modules from their own sections and
serves

* training: ``{"source": batch, "target": batch}`` per step, from Lightning's
  `CombinedLoader` in ``max_size_cycle`` mode (the shorter stream restarts until the
  longer one ends its epoch). Lightning saves and restores the state of each inner
  `ResumableLoader` in the checkpoint (``CombinedLoader._state_dicts``), so a run resumed
  mid-epoch continues both streams where they were.
* validation, test: the flat batches of each domain of ``eval_domains`` (default the
  target alone; ``[target, source]`` gives one loader per domain, the target's first,
  so a paradigm can report metrics per domain); prediction: the target's.

Every batch carries ``domain`` (``"source"`` or ``"target"``). Target batches in
training never carry ``velocity``; in validation and test they do when
``target_labels`` is true (metrics only).
"""

from __future__ import annotations

from typing import Any, Sequence

from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader

from fwi_lightning import registry
from fwi_lightning.errors import ConfigError
from fwi_lightning.problem import Problem
from fwi_lightning.specs import DataModuleSpec

#: The two domains, in the order of the training batch.
DOMAINS: tuple[str, ...] = ("source", "target")

#: Survey properties both domains must share: grid, record length and sampling, geometry.
SHARED_SURVEY = ("nz", "nx", "spacing", "nt", "dt", "source_row", "receiver_row", "source_columns", "receiver_columns")


def survey_differences(source: Any, target: Any) -> list[str]:
    """The `SHARED_SURVEY` fields in which two surveys differ, as ``name (source vs target)``."""
    return [
        f"{name} ({getattr(source, name)} vs {getattr(target, name)})"
        for name in SHARED_SURVEY
        if getattr(source, name) != getattr(target, name)
    ]


class SourceTargetDataModule(LightningDataModule):
    """A labelled source stream and a target stream side by side, for domain adaptation.

    Training batches are ``{"source": batch, "target": batch}``, each a flat batch
    (``data`` [B, S, T, R] raw amplitudes, ``velocity`` [B, 1, NZ, NX] m/s on the source,
    ``family`` [B], ``index`` [B]) plus ``domain``. Validation and test batches are those
    of the ``eval_domains`` (one loader each, in that order), with their ``domain``.
    ``problem`` is the source's (its forward operator included), with
    ``extra["domains"]`` holding each domain's own `Problem` as a dict (its data and
    velocity ranges), so both travel with a checkpoint.

    Args:
        seed: the experiment seed (injected); the source is built with it, the target
            with seed + 1, so two simulated domains never draw the same models.
        source: the source data module's whole section, e.g. ``{name: simulated,
            families: {flatvel: 1}}``.
        target: the target data module's section, e.g. ``{name: openfwi, data_dir: ...}``.
        target_labels: whether the target's velocities reach validation and test
            batches (for metrics). Training target batches never carry them.
        eval_domains: the domains validated and tested, one loader each in this order;
            default ``[target]``; ``[target, source]`` for metrics per domain.

    Raises:
        ConfigError: a domain's section is invalid (keyed ``source...``/``target...``),
            or the two surveys differ (keyed ``target.survey``).
    """

    def __init__(self, seed: int = 0, source: DataModuleSpec = None, target: DataModuleSpec = None, target_labels: bool = True,
                 eval_domains: Sequence[str] = ("target",)):
        super().__init__()
        self.eval_domains = tuple(eval_domains)
        if not self.eval_domains or any(name not in DOMAINS for name in self.eval_domains) or len(set(self.eval_domains)) < len(self.eval_domains):
            raise ConfigError(f"expected distinct domains among {', '.join(DOMAINS)}, got {list(eval_domains)!r}", key="eval_domains")
        for name, section in (("source", source), ("target", target)):
            if section is None:
                raise ConfigError(f"the {name} data module is missing: set {name}: {{name: <data module>, ...}}", key=name)
        self.seed = int(seed)
        self.modules = {
            "source": registry.build("datamodules", source, key="source", seed=self.seed),
            "target": registry.build("datamodules", target, key="target", seed=self.seed + 1),
        }
        self.target_labels = bool(target_labels)
        self._problem: Problem | None = None

    @property
    def source(self) -> LightningDataModule:
        return self.modules["source"]

    @property
    def target(self) -> LightningDataModule:
        return self.modules["target"]

    @property
    def problem(self) -> Problem:
        """The source's `Problem`, with ``extra["domains"] = {"source": dict, "target": dict}``.

        Raises:
            ConfigError: the target's survey differs from the source's (key ``target.survey``).
        """
        if self._problem is None:
            problems = {name: module.problem for name, module in self.modules.items()}
            differ = survey_differences(problems["source"].survey, problems["target"].survey)
            if differ:
                raise ConfigError(
                    f"the target's survey differs from the source's in {', '.join(differ)}; "
                    "one model serves both domains, so give the target the source's survey",
                    key="target.survey",
                )
            source = problems["source"]
            extra = {**source.extra, "domains": {name: p.to_dict() for name, p in problems.items()}}
            self._problem = Problem(source.survey, source.velocity_range, source.data_range, extra=extra,
                                    operator_settings=source.operator_settings, operator=source.operator)
        return self._problem

    def _attach(self) -> None:
        """Hand the trainer to both modules (their ranks and device decisions read it)."""
        for module in self.modules.values():
            module.trainer = self.trainer

    def train_dataloader(self) -> CombinedLoader:
        """``{"source": batch, "target": batch}`` per step, the shorter stream cycled."""
        self._attach()
        return CombinedLoader({name: module.train_dataloader() for name, module in self.modules.items()}, mode="max_size_cycle")

    def _evaluation(self, split: str) -> Any:
        """The `split` loader of each of the `eval_domains` (a bare loader when there is one)."""
        self._attach()
        loaders = [getattr(self.modules[name], f"{split}_dataloader")() for name in self.eval_domains]
        return loaders[0] if len(loaders) == 1 else loaders

    def val_dataloader(self) -> Any:
        return self._evaluation("val")

    def test_dataloader(self) -> Any:
        return self._evaluation("test")

    def predict_dataloader(self) -> Any:
        self._attach()
        return self.target.predict_dataloader()

    def _finish(self, name: str, batch: dict[str, Any], dataloader_idx: int, training: bool) -> dict[str, Any]:
        """One domain's batch after its own module's device hook, with ``domain``; target labels dropped where not allowed."""
        out = dict(self.modules[name].on_after_batch_transfer(batch, 0))  # each domain module has one loader per split
        out["domain"] = name
        if name == "target" and (training or not self.target_labels):
            out.pop("velocity", None)
        return out

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Run each domain's own device hook (e.g. on-device simulation) and add ``domain``."""
        if isinstance(batch, dict) and set(batch) == set(DOMAINS):
            return {name: self._finish(name, batch[name], dataloader_idx, training=True) for name in DOMAINS}
        domain = self.eval_domains[dataloader_idx] if self.trainer is None or not self.trainer.predicting else "target"
        return self._finish(domain, batch, dataloader_idx, training=False)

    def state_dict(self) -> dict[str, Any]:
        """Each domain's own state (e.g. its data range)."""
        return {name: module.state_dict() for name, module in self.modules.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore each domain's state saved by `state_dict`."""
        for name, module in self.modules.items():
            if name in state_dict:
                module.load_state_dict(state_dict[name])
