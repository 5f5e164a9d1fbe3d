"""The plugin's components against fwi-lightning's contracts (fwi_lightning.testing)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fwi_lightning import registry, testing

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "example.yaml"


def test_network_contract():
    testing.check_network("example_mlp", hidden=[32])


def test_loss_contract():
    testing.check_loss("example_gradient_difference", alpha=2.0)


def test_named_output_loss_contract_in_the_paradigm_that_produces_its_output():
    testing.check_loss("example_noisy_l1", paradigm="example_noise_consistency")


def test_velocity_family_contract():
    testing.check_velocity_family("example_anomaly", amplitude=[0.2, 0.3])


def test_callback_contract():
    check = testing.check_callback("example_saturation", margin=0.05)
    assert {"val/saturation", "val/velocity_std_mps"} <= set(check.fit_metrics)


class _Predicting:
    """A stand-in module over 1500..4500 m/s: predicts fixed velocities, records what is logged."""

    problem = SimpleNamespace(velocity_range=(1500.0, 4500.0))

    def __init__(self, velocity: torch.Tensor):
        self.velocity = velocity
        self.logged: dict[str, float] = {}

    def __call__(self, data: torch.Tensor) -> torch.Tensor:
        return self.velocity

    def log(self, name: str, value: torch.Tensor, **kwargs) -> None:
        self.logged[name] = float(value)


def test_saturation_counts_the_cells_within_the_margin_of_either_bound():
    # Margin 0.05 of 3000 m/s: saturated at or below 1650 m/s, at or above 4350 m/s.
    velocity = torch.full((2, 1, 4, 4), 3000.0)
    velocity[0, 0, 0, :3] = torch.tensor([1500.0, 1650.0, 1651.0])  # 2 saturated, 1 just inside
    velocity[1, 0, 3, :] = torch.tensor([4349.0, 4350.0, 4400.0, 4500.0])  # 3 saturated
    module = _Predicting(velocity)
    callback = registry.build("callbacks", {"name": "example_saturation", "margin": 0.05}, key="callbacks")
    callback.on_validation_batch_end(None, module, None, {"data": torch.zeros(2, 1, 1, 1)}, 0)
    assert module.logged["val/saturation"] == pytest.approx(5 / 32)
    assert module.logged["val/velocity_std_mps"] == pytest.approx(np.std(velocity.numpy(), ddof=1), rel=1e-6)


def test_datamodule_contract():
    testing.check_datamodule("example_dead_traces", fraction=0.25, base=testing.tiny_data_config())


@pytest.mark.parametrize("network", ["example_mlp", "tiny"])
def test_paradigm_contract_with_plugin_and_builtin_networks(network):
    check = testing.check_paradigm("example_noise_consistency", network={"name": network, **testing.tiny_settings("networks", network)},
                                   losses={"l1": 1.0, "example_noisy_l1": 0.5})
    assert check.fit_metrics["train/consistency"] > 0.0  # noise moved the prediction
    assert check.fit_metrics["train/example_noisy_l1"] > 0.0  # the loss read the named output
    assert check.run.model.hparams.consistency == 0.1


def test_every_component_is_registered_by_this_distribution():
    mine = {g: sorted(e.name for e in registry.entries(g) if e.distribution == "fwi-lightning-example") for g in registry.GROUPS}
    mine = {group: names for group, names in mine.items() if names}  # it adds nothing to the other groups (critics, ...)
    assert mine == {"networks": ["example_mlp"], "paradigms": ["example_noise_consistency"], "velocity": ["example_anomaly"],
                    "losses": ["example_gradient_difference", "example_noisy_l1"], "callbacks": ["example_saturation"],
                    "datamodules": ["example_dead_traces"]}
    versions = {e.version for g in registry.GROUPS for e in registry.entries(g) if e.distribution == "fwi-lightning-example"}
    assert versions == {"0.1.0"}


def test_dead_traces_are_zero_in_every_shot_and_fixed_per_sample():
    datamodule = testing.tiny_datamodule({"name": "example_dead_traces", "fraction": 0.25, "base": testing.tiny_data_config()})
    clean = testing.tiny_batch("val", datamodule.base)["data"]
    dead = testing.tiny_batch("val", datamodule)["data"]
    silent = (dead == 0).all(dim=2)  # [B, S, R]: receivers recording nothing
    assert silent.sum(dim=-1).eq(4).all()  # 25 % of 16 receivers, in every shot
    assert torch.equal(silent[:, 0], silent[:, 1])  # the same channels in both shots
    assert torch.equal(dead[~silent.unsqueeze(2).expand_as(dead)], clean[~silent.unsqueeze(2).expand_as(clean)])


def test_gradient_difference_ignores_a_constant_offset_but_not_a_blur():
    problem = testing.tiny_problem()
    loss = registry.build("losses", {"name": "example_gradient_difference"}, key="losses", problem=problem)
    velocity = torch.full((1, 1, 16, 16), 2000.0)
    velocity[..., 8:, :] = 3500.0
    batch = {"velocity": velocity}
    assert float(loss(velocity + 300.0, batch)) == pytest.approx(0.0, abs=1e-6)
    blurred = velocity.clone()
    blurred[..., 7:9, :] = 2750.0
    assert float(loss(blurred, batch)) > 0.01


def test_noisy_l1_reads_the_noisy_velocity_output_only():
    problem = testing.tiny_problem()
    loss = registry.build("losses", {"name": "example_noisy_l1"}, key="losses", problem=problem)
    assert loss.reads == ("noisy_velocity",)
    velocity = torch.full((2, 1, 16, 16), 2000.0)
    noisy = velocity + 300.0  # 300 m/s over a 3000 m/s range: 0.2 on the [-1, 1] scale
    assert float(loss({"noisy_velocity": noisy}, {"velocity": velocity})) == pytest.approx(0.2, rel=1e-5)


def test_noisy_l1_in_a_paradigm_without_that_output_is_a_one_line_config_error():
    from fwi_lightning.errors import ConfigError
    from fwi_lightning.paradigms.supervised import Supervised

    with pytest.raises(ConfigError) as info:
        Supervised(testing.tiny_problem(), network={"name": "tiny"}, losses={"l1": 1.0, "example_noisy_l1": 0.5})
    assert info.value.key == "losses.example_noisy_l1"
    assert "'noisy_velocity'" in info.value.message and "it produces velocity" in info.value.message
    assert "\n" not in str(info.value)
