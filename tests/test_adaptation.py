"""Unsupervised domain adaptation: the gradient-reversal layer, MMD and CORAL against independent
computations, target labels that never reach training, both streams resumed, and the one-line
refusals of bad settings."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from fwi_lightning import registry, testing
from fwi_lightning.cli import main
from fwi_lightning.data.combined import SourceTargetDataModule
from fwi_lightning.errors import ConfigError
from fwi_lightning.losses import domain
from fwi_lightning.networks.base import VelocityNetwork
from fwi_lightning.paradigms.adaptation import Adaptation

SOURCE = testing.tiny_data_config(families={"flatvel": 1.0}, sizes={"train": 6, "val": 2, "test": 2})
TARGET = testing.tiny_data_config(families={"curvevel": 1.0}, sizes={"train": 4, "val": 2, "test": 2})
DATA = {"name": "source_target", "source": SOURCE, "target": TARGET, "eval_domains": ["target", "source"]}
EVERY_METHOD = {"dann": 0.5, "mmd": 1.0, "coral": 1.0, "physics": {"weight": 1.0, "shots": 1}}


# ---------------------------------------------------------------------------
# The domain terms


def test_gradient_reversal_is_the_identity_forward_and_flips_and_scales_the_gradient_exactly():
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(5, 7, dtype=torch.float64)
    y = domain.reverse_gradient(x, 0.37)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.equal(x.grad, -0.37 * upstream)
    layer = domain.GradientReversal(2.0)
    z = torch.randn(3, 4, requires_grad=True)
    (layer(z) * 3.0).sum().backward()
    assert torch.equal(z.grad, torch.full((3, 4), -6.0))


def test_domain_classifier_trains_itself_normally_and_the_features_reversed():
    torch.manual_seed(0)
    classifier = domain.DomainClassifier(6, hidden=8)
    source, target = torch.randn(4, 6), torch.randn(3, 6) + 1.0
    grads = {}
    for scale in (0.0, 1.0, 0.25):
        classifier.zero_grad()
        features = [source.clone().requires_grad_(), target.clone().requires_grad_()]
        classifier.reversal.scale = scale
        loss, accuracy = domain.domain_loss(classifier, *features)
        loss.backward()
        grads[scale] = (features[0].grad.clone(), [p.grad.clone() for p in classifier.parameters()])
        assert 0.0 <= float(accuracy) <= 1.0
    for scale in (1.0, 0.25):
        for own, reference in zip(grads[scale][1], grads[0.0][1]):
            assert torch.equal(own, reference)  # the classifier's own gradient is not reversed
    assert torch.count_nonzero(grads[0.0][0]) == 0
    plain = [source.clone().requires_grad_(), target.clone().requires_grad_()]
    logits = classifier.layers(torch.cat(plain)).squeeze(1)
    labels = torch.cat([torch.zeros(4), torch.ones(3)])
    torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
    assert torch.allclose(grads[0.25][0], -0.25 * plain[0].grad, atol=1e-7)
    assert torch.allclose(grads[1.0][0], -plain[0].grad, atol=1e-7)


def test_dann_ramp_up_follows_the_usual_schedule():
    assert domain.dann_lambda(0.0) == 0.0
    assert domain.dann_lambda(0.5) == pytest.approx(2.0 / (1.0 + math.exp(-5.0)) - 1.0)
    assert domain.dann_lambda(1.0) == pytest.approx(2.0 / (1.0 + math.exp(-10.0)) - 1.0)
    assert domain.dann_lambda(3.0) == domain.dann_lambda(1.0)


def mmd_reference(x: np.ndarray, y: np.ndarray, bandwidths) -> float:
    """Biased multi-kernel MMD^2 by explicit loops (float64)."""
    joint = np.concatenate([x, y])
    n = len(joint)
    d2 = np.array([[np.sum((a - b) ** 2) for b in joint] for a in joint])
    scale = d2.sum() / (n * (n - 1))
    k = sum(np.exp(-d2 / (b * scale)) for b in bandwidths)
    m = len(x)
    return k[:m, :m].mean() + k[m:, m:].mean() - 2 * k[:m, m:].mean()


def test_mmd_and_coral_are_zero_for_identical_batches_and_positive_for_shifted_ones():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 5))
    same = torch.tensor(x)
    assert float(domain.mmd(same, same.clone())) == pytest.approx(0.0, abs=1e-12)
    assert float(domain.coral(same, same.clone())) == pytest.approx(0.0, abs=1e-12)
    shifted = x + 1.5
    scaled = x * np.array([1.0, 2.0, 1.0, 0.5, 3.0])
    assert float(domain.mmd(same, torch.tensor(shifted))) > 0.05
    assert float(domain.coral(same, torch.tensor(scaled))) > 1e-3
    y = rng.standard_normal((6, 5)) + 0.7
    assert float(domain.mmd(same, torch.tensor(y))) == pytest.approx(mmd_reference(x, y, domain.DEFAULT_BANDWIDTHS), rel=1e-5)
    expected = np.sum((np.cov(x, rowvar=False) - np.cov(scaled, rowvar=False)) ** 2) / (4 * 5**2)
    assert float(domain.coral(same, torch.tensor(scaled))) == pytest.approx(expected, rel=1e-5)
    assert float(domain.coral(same, torch.tensor(shifted))) == pytest.approx(0.0, abs=1e-6)  # a shift keeps the covariance


# ---------------------------------------------------------------------------
# The paradigm


@pytest.fixture(scope="module")
def datamodule():
    return registry.build("datamodules", dict(DATA), key="data", seed=0)


def adaptation(datamodule, methods=EVERY_METHOD, seed=0) -> Adaptation:
    torch.manual_seed(seed)
    spec = {"name": "adaptation", "network": dict(testing.TINY_NETWORK), "methods": methods}
    return registry.build("paradigms", spec, key="model", problem=datamodule.problem)


def training_pair(datamodule):
    return datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader()))[0], 0)


def test_target_labels_poisoned_with_nan_leave_training_finite(datamodule):
    clean = adaptation(datamodule)
    poisoned = adaptation(datamodule)
    batch = training_pair(datamodule)
    assert "velocity" not in batch["target"]
    bad = {"source": batch["source"], "target": {**batch["target"], "velocity": torch.full_like(batch["source"]["velocity"], float("nan"))}}
    losses = []
    for model, pair in ((clean, batch), (poisoned, bad)):
        optimizer = model.configure_optimizers()
        trace = []
        for _ in range(3):
            optimizer.zero_grad()
            loss = model.training_step(pair, 0)
            loss.backward()
            assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
            optimizer.step()
            trace.append(float(loss.detach()))
        losses.append(trace)
        assert all(torch.isfinite(p).all() for p in model.parameters())
    assert losses[0] == losses[1]  # the labels changed nothing


def test_nan_target_labels_through_a_whole_fit_leave_it_finite(monkeypatch, tmp_path):
    finish = SourceTargetDataModule._finish

    def leaking(self, name, batch, dataloader_idx, training):
        out = finish(self, name, batch, dataloader_idx, training)
        if name == "target":
            out["velocity"] = torch.full((len(out["data"]), 1, 16, 16), float("nan"))
        return out

    monkeypatch.setattr(SourceTargetDataModule, "_finish", leaking)
    dm = registry.build("datamodules", {**DATA, "eval_domains": ["source"]}, key="data", seed=0)
    model = adaptation(dm)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert all(math.isfinite(v) for v in metrics.values()) and "train/physics" in metrics and "val/source/mae" in metrics
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_source_only_reads_no_target_and_every_method_logs_its_term(datamodule):
    batch = training_pair(datamodule)
    source_only = adaptation(datamodule, methods={})
    logged = {}
    source_only.log_losses = lambda stage, total, terms, size: logged.update(terms)
    without_target = {"source": batch["source"], "target": {"data": torch.full_like(batch["target"]["data"], float("nan"))}}
    assert math.isfinite(float(source_only.training_step(without_target, 0))) and set(logged) == {"l1"}
    full = adaptation(datamodule)
    full.log_losses = lambda stage, total, terms, size: logged.update(terms)
    full.training_step(batch, 0)
    assert {"dann", "dann_lambda", "domain_accuracy", "mmd", "coral", "physics"} <= set(logged)


class Recording(Adaptation):
    """Records the sample indices of both streams each step."""

    def on_fit_start(self):
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append((batch["source"]["index"].tolist(), batch["target"]["index"].tolist()))
        return super().training_step(batch, batch_idx)


def test_a_resumed_adaptation_run_continues_both_streams_where_they_were(tmp_path):
    torch.set_num_threads(1)

    def build():
        dm = registry.build("datamodules", dict(DATA), key="data", seed=0)
        torch.manual_seed(0)
        spec = {"name": "test_adaptation:Recording", "network": dict(testing.TINY_NETWORK), "methods": EVERY_METHOD}
        return dm, registry.build("paradigms", spec, key="model", problem=dm.problem)

    options = {"accelerator": "cpu", "max_epochs": 1, "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
               "num_sanity_val_steps": 0, "limit_val_batches": 0, "default_root_dir": tmp_path}
    dm, whole = build()
    saver = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=-1, filename="{step}")
    pl.Trainer(callbacks=[saver], **options).fit(whole, datamodule=dm)
    assert whole.seen == [([0, 1], [0, 1]), ([2, 3], [2, 3]), ([4, 5], [0, 1])]

    dm, resumed = build()
    pl.Trainer(enable_checkpointing=False, **options).fit(resumed, datamodule=dm, ckpt_path=str(tmp_path / "step=1.ckpt"))
    assert resumed.seen == whole.seen[1:]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


# ---------------------------------------------------------------------------
# Bad input: one line naming the key and the fix


class NoFeatures(VelocityNetwork):
    """A backbone that maps data to velocity without exposing encoder features."""

    def __init__(self, problem):
        super().__init__(problem)
        self.scale = torch.nn.Parameter(torch.zeros(1))

    def normalised(self, data):
        return torch.tanh(self.scale * data.mean(dim=(1, 2, 3)))[:, None, None, None].expand(-1, 1, *self.velocity_shape)


def run_bad(tmp_path, capsys, model, data):
    path = tmp_path / "uda.yaml"
    path.write_text(yaml.safe_dump(testing.tiny_experiment(model, data=data, run_dir=tmp_path / "runs")))
    status = main([str(path), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("case, fragments", [
    ("target without data", ["key 'data.target.data_dir'", "no training files"]),
    ("no target stream", ["key 'model'", "set data: {name: source_target"]),
    ("surveys differ", ["key 'data.target.survey'", "nt (120 vs 100)"]),
    ("dann without features", ["key 'model.methods.dann'", "exposes none", "choose a network with encode/decode"]),
    ("unknown method", ["key 'model.methods.coarl'", "did you mean 'coral'"]),
    ("unknown method parameter", ["key 'model.methods.dann.ramp'", "did you mean 'ramp_steps'"]),
])
def test_fwi_run_refuses_bad_adaptation_settings_in_one_line(tmp_path, capsys, case, fragments):
    model = {"name": "adaptation", "network": dict(testing.TINY_NETWORK), "methods": {"dann": 1.0}}
    data = dict(DATA)
    if case == "target without data":
        data["target"] = {"name": "openfwi", "labels": False, "survey": dict(testing.TINY_SURVEY), "velocity_range": [1500, 4500]}
    elif case == "no target stream":
        data = dict(SOURCE)
    elif case == "surveys differ":
        data["target"] = {**TARGET, "survey": {**testing.TINY_SURVEY, "nt": 100}}
    elif case == "dann without features":
        model["network"] = {"name": "test_adaptation:NoFeatures"}
    elif case == "unknown method":
        model["methods"] = {"coarl": 1.0}
    else:
        model["methods"] = {"dann": {"weight": 1.0, "ramp": 10}}
    err = run_bad(tmp_path, capsys, model, data)
    for fragment in fragments:
        assert fragment in err, err


def test_an_unlabelled_npy_target_trains_with_physics(tmp_path):
    """Observed target data without velocities (npy, ``labels: false``) beside a simulated source."""
    dm = registry.build("datamodules", testing.tiny_data_config(families={"curvevel": 1.0}, sizes={"train": 4, "val": 2, "test": 2}),
                        key="data", seed=5)
    for split in ("train", "test"):
        for part, batch in enumerate(dm.dataloader(split)):
            np.save(tmp_path / f"{split}_data{part}.npy", batch["data"].numpy())
    target = {"name": "openfwi", "labels": False, "survey": dict(testing.TINY_SURVEY), "velocity_range": [1500, 4500], "batch_size": 2,
              "data_files": {"train": str(tmp_path / "train_data*.npy"), "val": str(tmp_path / "test_data*.npy"),
                             "test": str(tmp_path / "test_data*.npy")}}
    data = {"name": "source_target", "source": SOURCE, "target": target, "eval_domains": ["target", "source"]}
    result = testing.run_experiment(testing.tiny_experiment(
        {"name": "adaptation", "network": dict(testing.TINY_NETWORK), "methods": {"physics": {"weight": 1.0, "shots": 1}, "mmd": 1.0}},
        data=data, run_dir=tmp_path / "runs"))
    assert "test/target/data_misfit" in result.test_metrics and "test/source/mae_mps" in result.test_metrics
    assert not any(k.startswith("test/target/mae") for k in result.test_metrics)  # no target labels, no target velocity metrics
    assert math.isfinite(result.fit_metrics["train/physics"])


def test_source_target_without_adaptation_data_is_refused_by_the_paradigm():
    with pytest.raises(ConfigError, match="set data: {name: source_target"):
        registry.build("paradigms", {"name": "adaptation", "network": dict(testing.TINY_NETWORK)}, key="model",
                       problem=testing.tiny_problem())


@pytest.mark.slow
@pytest.mark.parametrize("experiment, overrides", [
    ("uda_marmousi", []),
    ("source_only_marmousi", []),
    ("finetune_marmousi", ["model.transfer.init_from=null"]),  # its source run does not exist here
])
def test_the_marmousi_experiments_build(tmp_path, capsys, experiment, overrides):
    import os

    from fwi_lightning.data.families.model_file import DATA_ENV, MARMOUSI_FILE

    root = os.environ.get(DATA_ENV)
    if not root or not os.path.isfile(os.path.join(root, MARMOUSI_FILE)):
        pytest.skip(f"Marmousi not found: set {DATA_ENV} to the folder holding {MARMOUSI_FILE}")
    path = Path(__file__).resolve().parents[1] / "experiments" / f"{experiment}.yaml"
    status = main([str(path), f"run_dir={tmp_path}", "--dry-run", *overrides])
    out = capsys.readouterr().out
    assert status == 0 and "[10, 375, 120]" in out and "[1500.0, 5500.0]" in out, out
