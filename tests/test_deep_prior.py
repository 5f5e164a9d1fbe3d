"""Deep-prior FWI (`deep_prior` paradigm) and its generator network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fwi_lightning import registry, testing


@pytest.fixture(scope="module")
def survey() -> dict:
    """The tiny single-survey section: one flat-layer model and its simulated gathers."""
    return {"name": "single_survey", **testing.TINY_SETTINGS["datamodules"]["single_survey"]}


def experiment(tmp_path, data: dict, steps: int, **model) -> dict:
    values = testing.tiny_experiment({"name": "deep_prior", **model}, data={**data, "steps_per_epoch": steps}, run_dir=tmp_path)
    values["trainer"] = {**testing.TINY_TRAINER, "fast_dev_run": False, "max_epochs": 1, "log_every_n_steps": 1}
    return values


def test_generator_sizes_its_latent_and_output():
    problem = testing.tiny_problem()
    network = registry.build("networks", {"name": "generator", "latent": 3, "latent_size": [2, 5], "channels": [4, 4, 4]},
                             key="network", problem=problem)
    assert network.latent_shape == (3, 2, 5)
    latent = torch.randn(2, 3, 2, 5)
    out = network.decode(latent)
    assert out.shape == (2, 1, 16, 16) and out.abs().max() <= 1.0
    assert network.encode(torch.zeros(2, *problem.data_shape)).shape == (2, 3, 2, 5)


def test_generator_contract():
    testing.check_network("generator", **testing.tiny_settings("networks", "generator"))


def test_deep_prior_fits_the_data_misfit(survey, tmp_path):
    generator = {"name": "generator", "latent": 4, "latent_size": [2, 2], "channels": [8, 8]}
    result = testing.run_experiment(experiment(tmp_path, survey, 40, network=generator, optimizer={"name": "adam", "lr": 3e-3},
                                               initial={"name": "linear", "v_top_mps": 2000.0, "v_bottom_mps": 3500.0}))
    module = result.run.model
    import csv

    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    misfits = [float(r["train/data_misfit"]) for r in rows if r.get("train/data_misfit")]
    assert len(misfits) == 40
    assert min(misfits[-5:]) < 0.5 * misfits[0], misfits
    final = np.load(next(tmp_path.rglob("final_velocity.npy")))
    assert np.array_equal(final, module.current_velocity()[0, 0].detach().numpy())
    lo, hi = module.problem.velocity_range
    assert lo <= final.min() and final.max() <= hi


def test_pretraining_reproduces_the_initial_model(survey, tmp_path):
    start = {"name": "linear", "v_top_mps": 2000.0, "v_bottom_mps": 3500.0}
    generator = {"name": "generator", "latent": 4, "latent_size": [2, 2], "channels": [8, 8]}
    datamodule = testing.tiny_datamodule(survey)
    before = registry.build("paradigms", {"name": "deep_prior", "network": generator, "initial": start}, key="model",
                            problem=datamodule.problem)
    after = registry.build("paradigms", {"name": "deep_prior", "network": generator, "initial": start, "pretrain_steps": 200,
                                         "pretrain_lr": 1e-2}, key="model", problem=datamodule.problem)
    linear = torch.linspace(2000.0, 3500.0, 16)[:, None].expand(16, 16)
    for module in (before, after):
        module.start_from(linear[None, None].clone())
    error = lambda m: float((m.current_velocity()[0, 0] - linear).abs().mean())  # noqa: E731
    assert error(after) < 100.0 < error(before)


def test_deep_prior_from_the_initial_model_and_checkpoints(survey):
    testing.check_paradigm("deep_prior", input="initial", network=testing.tiny_settings("networks", "generator") | {"name": "generator"})
