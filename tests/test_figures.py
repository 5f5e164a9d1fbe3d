"""VelocityFigures: the PNGs it promises, when, where, and what reaches W&B."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger
from test_supervised import SyntheticDataModule, supervised, trainer

from fwi_lightning import plotting
from fwi_lightning.callbacks.figures import VelocityFigures
from fwi_lightning.errors import ConfigError


class RecordingWandbLogger(WandbLogger):
    """A W&B logger that records `log_image` calls instead of starting a W&B run."""

    def __init__(self):
        super().__init__(mode="disabled")
        self.images = []

    def log_image(self, key, images, step=None, **kwargs):
        self.images.append((key, list(images), step))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures-run")
    datamodule = SyntheticDataModule(sizes=(16, 8, 8), batch_size=4)
    model = supervised(datamodule.problem)
    figures = VelocityFigures(every_n_epochs=2, n_samples=3)
    wandb = RecordingWandbLogger()
    run = trainer(root, max_epochs=4, callbacks=[figures], logger=wandb, enable_checkpointing=False)
    run.fit(model, datamodule=datamodule)
    run.test(model, datamodule=datamodule, verbose=False)
    wandb.experiment.finish()  # no W&B run left open for later tests
    return root, figures, wandb


def test_validation_figures_every_n_epochs_test_gallery_and_curves(fitted):
    root, _, _ = fitted
    written = sorted(p.name for p in (root / "figures").iterdir())
    assert written == ["test_gallery.png", "training_curves.png", "val_epoch001.png", "val_epoch003.png"]
    image = matplotlib.image.imread(root / "figures" / "val_epoch003.png")
    assert image.ndim == 3 and image.shape[0] > image.shape[1] * 0.5  # three sample rows


def test_figures_use_the_same_validation_samples_each_time(fitted):
    _, figures, _ = fitted
    datamodule = SyntheticDataModule(sizes=(16, 8, 8), batch_size=4)
    assert torch.equal(figures.samples["val"]["velocity"], datamodule.sets["val"]["velocity"][:3])


def test_history_has_one_point_per_epoch_for_losses_and_metrics(fitted):
    _, figures, _ = fitted
    for name in ("train/loss", "train/l1", "val/loss", "val/ssim"):
        assert [epoch for epoch, _ in figures.history[name]] == [0, 1, 2, 3], name


def test_every_figure_reaches_wandb(fitted):
    _, _, wandb = fitted
    keys = [key for key, _, _ in wandb.images]
    assert keys == ["figures/val", "figures/val", "figures/training_curves", "figures/test"]
    assert all(path.endswith(".png") for _, paths, _ in wandb.images for path in paths)


def test_comparison_axes_are_in_km_seconds_and_m_per_s():
    problem = SyntheticDataModule(sizes=(2, 2, 2)).problem
    true = np.full((2, 16, 16), 2000.0)
    fig = plotting.velocity_comparison(problem, true, true + 100.0, np.zeros((2, 2, 120, 16)))
    axes = fig.axes
    labels = {ax.get_xlabel() for ax in axes} | {ax.get_ylabel() for ax in axes}
    assert {"x (km)", "depth (km)", "receiver x (km)", "time (s)", "m/s"} <= labels
    first = axes[0].images[0]
    assert first.get_extent() == pytest.approx([-0.005, 0.155, 0.155, -0.005])  # 16 cells of 10 m
    assert first.get_clim() == (1500.0, 4500.0)


def test_comparison_names_each_row_over_its_predicted_panel():
    problem = SyntheticDataModule(sizes=(2, 2, 2)).problem
    true = np.full((2, 16, 16), 2000.0)
    titles = [ax.get_title() for ax in plotting.velocity_comparison(problem, true, true, row_labels=["fwi", "refined"]).axes]
    assert [t for t in titles if t not in ("", "true", "predicted - true")] == ["fwi", "refined"]
    titles = [ax.get_title() for ax in plotting.velocity_comparison(problem, true, true).axes]
    assert titles.count("predicted") == 2


def test_agc_shows_a_weak_late_arrival_at_the_scale_of_the_direct_wave():
    # Alternating +-a samples have RMS a: 100x apart before the gain, both at unit RMS after.
    dt, n = 0.002, 200  # window 0.1 s: 25 samples either side
    sign = np.where(np.arange(n) % 2, -1.0, 1.0)
    envelope = np.zeros(n)
    envelope[:80], envelope[120:] = 100.0, 1.0
    gained = plotting.agc((sign * envelope)[:, None], dt, window_s=0.1)[:, 0]
    assert np.abs(gained[26:54]) == pytest.approx(np.ones(28), rel=1e-2)  # windows inside the direct wave
    assert np.abs(gained[146:174]) == pytest.approx(np.ones(28), rel=1e-2)  # and inside the weak arrival
    assert np.all(gained[80:95] == 0.0)  # silence stays silent
    assert np.all(np.isfinite(plotting.agc(np.zeros((n, 3)), dt)))


def test_gather_colour_limits_follow_the_percentile_of_the_gained_gather():
    problem = SyntheticDataModule(sizes=(2, 2, 2)).problem
    rng = np.random.default_rng(0)
    data = rng.normal(0.0, 1.0, (1, 2, 120, 16))
    data[0, :, 10:20] *= 1e3  # a direct wave a thousand times stronger than the rest
    true = np.full((1, 16, 16), 2000.0)
    fig = plotting.velocity_comparison(problem, true, true, data)
    shown = fig.axes[3].images[0]  # row 0, gather column
    gained = plotting.agc(data[0, 1], problem.survey.dt)
    assert np.asarray(shown.get_array()) == pytest.approx(gained)
    limit = np.percentile(np.abs(gained), plotting.GATHER_CLIP_PERCENTILE)
    assert shown.get_clim() == pytest.approx((-limit, limit))
    assert limit < np.abs(gained).max()  # the top 2 % is clipped
    assert np.abs(gained[60:]).std() > 0.2 * limit  # the late, weak part fills the scale


@pytest.mark.parametrize("params", [{"every_n_epochs": 0}, {"n_samples": -1}])
def test_bad_settings_are_config_errors(params):
    with pytest.raises(ConfigError, match="positive integer"):
        VelocityFigures(**params)
