"""Runtime knobs of the simulated data module, and families per split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fwi_lightning.config import load_config, validate
from fwi_lightning.data.simulated import KNOBS, SimulatedDataModule
from fwi_lightning.errors import ConfigError
from fwi_lightning.physics import Survey
from fwi_lightning.physics.operator import ForwardOperator
from fwi_lightning.physics.simulator import Simulator
from fwi_lightning.testing import TINY_NETWORK, tiny_data_config, tiny_experiment

SURVEY = Survey(nz=16, nx=16, spacing=10.0, nt=120, dt=0.002, peak_freq=15.0, n_shots=2, n_receivers=16)
RANGE = (1500.0, 4500.0)
CHANGES = {"bandpass": [3.0, 20.0], "snr_db": 5.0, "active_shots": [1], "max_offset_m": 70.0, "record_time_s": 0.15}


def module(**options):
    values = dict(seed=2, survey=SURVEY, families={"flatvel": 1.0, "curvevel": 1.0}, velocity_range=list(RANGE),
                  sizes={"train": 16, "val": 4, "test": 4}, batch_size=2, reference_size=2, snr_db=30.0)
    return SimulatedDataModule(**{**values, **options})


def expected_data(raw, **settings):
    """An operator built afresh with `settings`, applied to a raw batch's velocity and noise seeds."""
    operator = ForwardOperator(Simulator(SURVEY, RANGE, "fast", step_buckets=True), **settings)
    return operator(raw["velocity"], raw["noise_seed"].tolist())


@pytest.mark.parametrize("options", [{"num_workers": 2}, {"cache": True}], ids=["workers", "cache"])
def test_processing_knobs_act_on_the_very_next_batch(options):
    dm = module(**options)
    batches = iter(dm.train_dataloader())
    first = next(batches)
    assert torch.equal(dm.on_after_batch_transfer(dict(first), 0)["data"], expected_data(first, snr_db=30.0))
    for name, value in CHANGES.items():
        dm.set_knob(name, value)
    raw = next(batches)  # simulated before the knobs changed (prefetched by a worker / cached)
    served = dm.on_after_batch_transfer(dict(raw), 0)
    assert "noise_seed" not in served
    assert torch.equal(served["data"], expected_data(raw, **CHANGES))
    assert not served["data"][:, 0].any()  # shot 0 is off


def test_family_weights_reach_the_sampler_after_the_prefetched_batches():
    for workers, lag in ((0, 0), (2, 4)):  # W workers hold 2 * W dispatched batches
        dm = module(num_workers=workers, families={"flatvel": 1.0, "curvevel": 0.0})
        families = []
        for number, batch in enumerate(dm.train_dataloader()):
            families.append(batch["family"].tolist())
            if number == 0:
                dm.set_knob("family_weights", {"train": {"flatvel": 0.0, "curvevel": 1.0}})
        assert families == [[0, 0]] * (1 + lag) + [[1, 1]] * (8 - 1 - lag)


def test_family_weights_act_on_a_cache_and_the_mix_follows_them():
    dm = module(cache=True, sizes={"train": 64, "val": 2, "test": 2}, batch_size=16, snr_db=None)
    before = torch.cat([b["family"] for b in dm.train_dataloader()])
    assert 0.3 < float(before.float().mean()) < 0.7
    cached = dm._cached["train"]
    dm.set_knob("family_weights", {"train": {"flatvel": 1.0, "curvevel": 3.0}})
    share = float(torch.cat([b["family"] for b in dm.train_dataloader()]).float().mean())
    assert share == pytest.approx(0.75, abs=0.12) and share > float(before.float().mean())
    dm.set_knob("family_weights", {"train": {"flatvel": 0.0}})
    for batch in dm.train_dataloader():
        assert batch["family"].tolist() == [1] * 16
        for b, index in enumerate(batch["index"].tolist()):  # served items are cached curvevel samples
            assert torch.equal(batch["data"][b], cached.items[index]["data"])


def test_unknown_or_bad_knob_is_one_line_naming_it():
    dm = module()
    with pytest.raises(ConfigError) as info:
        dm.set_knob("snr", 10.0)
    message = str(info.value)
    assert "\n" not in message and "'snr'" in message and "did you mean 'snr_db'" in message
    assert all(name in message for name in KNOBS) and info.value.key == "snr"
    with pytest.raises(ConfigError, match="draws no family 'style'") as info:
        dm.set_knob("family_weights", {"train": {"style": 1.0}})
    assert info.value.key == "family_weights.train.style"
    with pytest.raises(ConfigError, match="below high corner"):
        dm.set_knob("bandpass", [30.0, 10.0])


def test_knob_values_round_trip_through_state_dict():
    dm = module()
    for name, value in CHANGES.items():
        dm.set_knob(name, value)
    dm.set_knob("family_weights", {"val": {"curvevel": 4.0}})
    resumed = module()
    resumed.load_state_dict(dm.state_dict())
    assert resumed.knobs() == dm.knobs()
    assert resumed.knobs()["family_weights"]["val"] == {"flatvel": 1.0, "curvevel": 4.0}
    assert resumed.problem.to_dict()["operator"] == {"step_buckets": True, **CHANGES}


def test_split_families_train_on_flatvel_and_test_on_a_model_file(tmp_path):
    depth = np.arange(20)[:, None] * 50.0 + 2500.0
    np.save(tmp_path / "section.npy", np.repeat(depth, 300, axis=1).astype(np.float32))
    marmousi = {"name": "model_file", "path": str(tmp_path / "section.npy"), "file_spacing": 10.0}
    dm = module(families={"flatvel": 1.0}, split_families={"test": {"marmousi": marmousi}})
    assert dm.problem.extra["families"] == ["flatvel", "marmousi"]
    train = next(iter(dm.train_dataloader()))
    test = next(iter(dm.test_dataloader()))
    assert train["family"].tolist() == [0, 0] and test["family"].tolist() == [1, 1]
    assert torch.equal(test["velocity"][:, 0], torch.from_numpy(depth[:16]).float().expand(2, 16, 16))
    assert not torch.equal(train["velocity"][0, 0], test["velocity"][0, 0])
    validate(load_config(None, values=experiment(split_families={"test": {"marmousi": marmousi}})))
    with pytest.raises(ConfigError, match="unknown parameter 'pth'") as info:
        validate(load_config(None, values=experiment(split_families={"test": {"m": {"name": "model_file", "pth": "x"}}})))
    assert info.value.key == "data.split_families.test.m.pth"


def experiment(**data):
    return tiny_experiment({"name": "supervised", "network": dict(TINY_NETWORK)}, data=tiny_data_config(**data))
