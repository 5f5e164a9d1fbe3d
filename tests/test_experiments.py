"""Every experiment file shipped in experiments/ loads and validates as it is."""

from pathlib import Path

import pytest

from fwi_lightning.config import load_config, validate

EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml"))


def test_the_experiments_folder_is_found():
    assert len(EXPERIMENTS) >= 20  # the 20 of 2026-12-03


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda path: path.stem)
def test_every_shipped_experiment_validates(path):
    config = validate(load_config(path))
    assert config.values["model"]["name"] and config.values["data"]["name"]
