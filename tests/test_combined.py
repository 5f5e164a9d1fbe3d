"""The source + target data module: paired training batches with domains, one Problem per
domain, surveys that must agree, the device hook of each domain, and mid-epoch resume."""

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from fwi_lightning import registry, testing
from fwi_lightning.cli import main
from fwi_lightning.errors import ConfigError

SOURCE = testing.tiny_data_config(families={"flatvel": 1.0}, sizes={"train": 6, "val": 2, "test": 2})
TARGET = testing.tiny_data_config(families={"curvevel": 1.0}, sizes={"train": 4, "val": 2, "test": 2})


def combined(source=None, target=None, seed=0, **params):
    section = {"name": "source_target", "source": dict(source or SOURCE), "target": dict(target or TARGET), **params}
    return registry.build("datamodules", section, key="data", seed=seed)


def steps(datamodule):
    """Training batches as a step receives them (after the device hook)."""
    return [datamodule.on_after_batch_transfer(batch, 0) for batch, _, _ in datamodule.train_dataloader()]


def test_training_pairs_a_source_and_a_target_batch_per_step_the_shorter_cycled():
    dm = combined()
    batches = steps(dm)
    assert len(batches) == 3  # max(6, 4) / batch 2
    assert [b["source"]["index"].tolist() for b in batches] == [[0, 1], [2, 3], [4, 5]]
    assert [b["target"]["index"].tolist() for b in batches] == [[0, 1], [2, 3], [0, 1]]
    assert all(b["source"]["domain"] == "source" and b["target"]["domain"] == "target" for b in batches)
    assert all("velocity" in b["source"] and "velocity" not in b["target"] for b in batches)
    alone = {name: registry.build("datamodules", section, key=name, seed=seed) for name, section, seed in (("source", SOURCE, 0), ("target", TARGET, 1))}
    for name in ("source", "target"):
        first = next(iter(alone[name].train_dataloader()))
        assert torch.equal(batches[0][name]["data"], first["data"])
    assert not torch.equal(batches[0]["source"]["data"], batches[0]["target"]["data"])


def test_validation_and_test_serve_the_target_with_labels_only_when_allowed():
    dm = combined()
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        batch = dm.on_after_batch_transfer(next(iter(loader)), 0)
        assert batch["domain"] == "target" and batch["velocity"].shape == (2, 1, 16, 16)
        testing._assert_batch(batch, dm.problem, "target")
    blind = combined(target_labels=False)
    assert "velocity" not in blind.on_after_batch_transfer(next(iter(blind.val_dataloader())), 0)


def test_problem_is_the_sources_with_one_problem_per_domain():
    dm = combined(target=testing.tiny_data_config(families={"curvevel": 1.0}, velocity_range=[1500.0, 5000.0]))
    problem = dm.problem
    source, target = dm.source.problem, dm.target.problem
    assert problem.velocity_range == source.velocity_range and problem.data_range == source.data_range
    assert problem.extra["families"] == ["flatvel"]
    assert problem.extra["domains"] == {"source": source.to_dict(), "target": target.to_dict()}
    assert problem.extra["domains"]["target"]["velocity_range"] == [1500.0, 5000.0]
    assert target.data_range != source.data_range
    restored = combined()
    restored.load_state_dict(dm.state_dict())
    assert restored.target.problem.data_range == target.data_range


def test_surveys_that_disagree_are_refused_naming_the_fields():
    target = testing.tiny_data_config(survey={**testing.TINY_SURVEY, "nt": 100, "dt": 0.0025})
    with pytest.raises(ConfigError, match=r"differs from the source's in nt \(120 vs 100\), dt \(0.002 vs 0.0025\)") as err:
        combined(target=target).problem
    assert err.value.key == "target.survey"


def experiment_args(tmp_path, *overrides):
    path = tmp_path / "da.yaml"
    path.write_text("schema_version: 1\nmodel: {name: supervised, network: {name: tiny, width: 4}}\ndata: {name: source_target}\n")
    sections = [f"data.source={SOURCE}", f"data.target={TARGET}"]
    return [str(path), *[s.replace("'", "") for s in sections], f"run_dir={tmp_path / 'runs'}", "--dry-run", *overrides]


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["data.target.survey.nt=100"], ["key 'data.target.survey'", "nt (120 vs 100)"]),
        (["data.target.families={flatvell: 1.0}"], ["key 'data.target.families.flatvell'", "did you mean 'flatvel'"]),
        (["data.source=null"], ["key 'data.source'", "source data module is missing"]),
        (["data.target.sizes={tran: 3}"], ["key 'data.target.sizes.tran'", "unknown split 'tran'"]),  # the target's own error, keyed under target
    ],
)
def test_fwi_run_reports_domain_mistakes_in_one_line(tmp_path, capsys, overrides, fragments):
    status = main(experiment_args(tmp_path, *overrides))
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


class Recorder(pl.LightningModule):
    """Uses both domains each step and records which samples it saw."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2 * 120 * 16, 16 * 16)
        self.seen = []

    def training_step(self, batch, _):
        source, target = batch["source"], batch["target"]
        self.seen.append((source["index"].tolist(), target["index"].tolist(), source["domain"], target["domain"]))
        prediction = self.layer(source["data"].flatten(1)).reshape(source["velocity"].shape)
        return torch.nn.functional.mse_loss(prediction, source["velocity"] / 1000.0) + 0.0 * self.layer(target["data"].flatten(1)).mean()

    def validation_step(self, batch, _):
        self.log("val/loss", self.layer(batch["data"].flatten(1)).abs().mean(), batch_size=len(batch["data"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def trainer(**options):
    return pl.Trainer(**{"accelerator": "cpu", "devices": 1, "max_epochs": 1, "logger": False, "enable_progress_bar": False,
                         "enable_model_summary": False, "num_sanity_val_steps": 0, **options})


def test_a_run_resumed_mid_epoch_continues_both_streams_and_the_device_hook_simulates(tmp_path):
    device_source = {**SOURCE, "simulate_on": "device"}  # velocity-only loader: the hook simulates
    whole = Recorder()
    saver = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=-1, filename="{step}")
    trainer(callbacks=[saver]).fit(whole, datamodule=combined(source=device_source))
    assert [s[:2] for s in whole.seen] == [([0, 1], [0, 1]), ([2, 3], [2, 3]), ([4, 5], [0, 1])]
    assert all(s[2:] == ("source", "target") for s in whole.seen)

    resumed = Recorder()
    trainer(enable_checkpointing=False).fit(resumed, datamodule=combined(source=device_source), ckpt_path=str(tmp_path / "step=1.ckpt"))
    assert resumed.seen == whole.seen[1:]
    assert np.allclose(resumed.layer.weight.detach().numpy(), whole.layer.weight.detach().numpy())


def test_an_openfwi_target_beside_a_simulated_source(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(1, 5):
        np.save(tmp_path / f"data{i}.npy", rng.standard_normal((2, 2, 120, 16)).astype(np.float32))
        np.save(tmp_path / f"model{i}.npy", rng.uniform(1500.0, 4500.0, (2, 1, 16, 16)).astype(np.float32))
    target = {"name": "openfwi", "data_dir": str(tmp_path), "survey": dict(testing.TINY_SURVEY), "batch_size": 2}
    dm = combined(target=target)
    assert dm.problem.extra["domains"]["target"]["extra"]["families"] == ["openfwi"]
    batches = steps(dm)
    assert len(batches) == 3 and sorted(i for b in batches for i in b["target"]["index"].tolist()) == list(range(6))  # 3 files of 2, shuffled
    assert all("velocity" not in b["target"] and b["target"]["data"].shape == (2, 2, 120, 16) for b in batches)
    test = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert np.array_equal(test["velocity"].numpy(), np.load(tmp_path / "model4.npy")[test["index"].numpy()])
    with pytest.raises(ConfigError, match=r"dt \(0.002 vs 0.001\)"):
        combined(target={**target, "survey": {}}).problem  # OpenFWI's default dt of 1 ms
