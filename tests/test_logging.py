"""Tracker selection: W&B offline without credentials, best-value summaries, CSV always."""

from __future__ import annotations

import pytest

from fwi_lightning import logging as fwi_logging


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))


def test_without_credentials_wandb_goes_offline_with_one_notice(no_credentials):
    mode, notice = fwi_logging.wandb_mode(None)
    assert mode == "offline"
    assert "wandb sync" in notice and "\n" not in notice


def test_api_key_or_netrc_means_online(no_credentials, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert fwi_logging.wandb_mode(None) == ("online", None)
    monkeypatch.delenv("WANDB_API_KEY")
    netrc_file = tmp_path / ".netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    netrc_file.chmod(0o600)
    assert fwi_logging.wandb_mode(None) == ("online", None)


def test_explicit_mode_and_environment_win(no_credentials, monkeypatch):
    assert fwi_logging.wandb_mode("disabled") == ("disabled", None)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert fwi_logging.wandb_mode(None) == ("offline", None)


@pytest.mark.parametrize(
    "metric, mode",
    [("val/ssim", "max"), ("test/flatvel/ssim", "max"), ("val/mae", "min"), ("train/loss", "min"), ("test/data_misfit", "min")],
)
def test_best_value_summary_direction(metric, mode):
    assert fwi_logging.summary_mode(metric) == mode


@pytest.mark.slow  # imports wandb: ~7 s
def test_wandb_logger_defines_each_metric_once_and_skips_hparams(monkeypatch):
    cls = fwi_logging._wandb_logger_class()
    defined, logged = [], []

    class FakeExperiment:
        def define_metric(self, name, summary):
            defined.append((name, summary))

    logger = cls.__new__(cls)
    monkeypatch.setattr(cls, "experiment", property(lambda self: FakeExperiment()))
    monkeypatch.setattr(cls.__mro__[1], "log_metrics", lambda self, metrics, step=None: logged.append(dict(metrics)))
    logger.log_metrics({"val/mae": 0.1, "val/ssim": 0.9, "epoch": 1})
    logger.log_metrics({"val/mae": 0.05})
    assert defined == [("val/mae", "min"), ("val/ssim", "max")]
    assert len(logged) == 2
    assert logger.log_hyperparams({"a": 1}) is None


def test_csv_logger_is_always_there_and_disabled_wandb_adds_nothing(tmp_path):
    loggers, notice = fwi_logging.make_loggers({"name": "wandb", "mode": "disabled"}, tmp_path, "run", {})
    assert [type(lg).__name__ for lg in loggers] == ["CSVLogger"]
    assert loggers[0].log_dir.rstrip("/") == str(tmp_path)
    assert notice is None
    loggers, _ = fwi_logging.make_loggers(None, tmp_path, "run", {})
    assert [type(lg).__name__ for lg in loggers] == ["CSVLogger"]
