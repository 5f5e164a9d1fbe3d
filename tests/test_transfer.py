"""Transfer learning for every paradigm: init_from (whole model or named parts) with its report,
freeze, per-module learning rates, and the one-line refusals of bad settings."""

from __future__ import annotations

import inspect

import pytest
import torch
import yaml

from fwi_lightning import registry, testing
from fwi_lightning.cli import main
from fwi_lightning.errors import ConfigError
from fwi_lightning.paradigms.transfer import TransferSettings
from fwi_lightning.signature import signature_of

NETWORK = {"name": "tiny", "width": 4}


@pytest.fixture(scope="module")
def problem():
    return testing.tiny_problem()


def build(problem, paradigm="supervised", seed=1, **params):
    torch.manual_seed(seed)
    return registry.build("paradigms", {"name": paradigm, "network": dict(NETWORK), **params}, key="model", problem=problem)


def save(model, path):
    """A checkpoint as Lightning writes one: weights, hyper-parameters, version."""
    import lightning

    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": lightning.__version__}, path)
    return str(path)


@pytest.fixture
def source(problem, tmp_path):
    """A supervised model whose every tensor differs from a fresh build's, saved as a checkpoint."""
    model = build(problem, seed=7)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.rand_like(tensor) + 0.5)
    return model, save(model, tmp_path / "source.ckpt")


def test_every_paradigm_takes_transfer():
    for name in registry.names("paradigms"):
        params = signature_of(registry.load("paradigms", name), "paradigms").params
        assert "transfer" in params, name
    assert inspect.signature(registry.load("paradigms", "supervised")).parameters["transfer"].default is None


def test_init_from_loads_exactly_the_named_parts(problem, source, capsys):
    trained, path = source
    fresh = build(problem).state_dict()
    model = build(problem, transfer={"init_from": path, "parts": ["network.encoder"]})
    state = model.state_dict()
    encoder = [k for k in state if k.startswith("network.encoder.")]
    assert encoder and model.transfer.report.loaded == encoder
    for name, tensor in state.items():
        expected = trained.state_dict()[name] if name in encoder else fresh[name]
        assert torch.equal(tensor, expected), name
    assert sorted(model.transfer.report.missing) == sorted(k for k in state if k not in encoder)
    assert sorted(model.transfer.report.unexpected) == sorted(k for k in state if k not in encoder)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"init_from {path}: loaded {len(encoder)} tensors; missing from the checkpoint: ")


def test_init_from_a_run_folder_loads_the_whole_model_and_reports_extra_modules(problem, source, tmp_path):
    trained, path = source
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    save(trained, run / "checkpoints" / "last.ckpt")
    model = build(problem, transfer={"init_from": str(tmp_path / "ru*")})  # a glob: the newest match
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, trained.state_dict()[name]), name
    assert model.transfer.report.missing == [] and model.transfer.report.unexpected == []


def test_adaptation_starts_from_a_supervised_checkpoint(tmp_path, source):
    trained, path = source
    data = {"name": "source_target", "source": testing.tiny_data_config(), "target": testing.tiny_data_config(families={"curvevel": 1.0})}
    problem = testing.tiny_datamodule(data).problem
    model = build(problem, "adaptation", methods={"dann": 1.0}, transfer={"init_from": path})
    report = model.transfer.report
    assert report.loaded == [k for k in trained.state_dict()]
    assert report.missing and all(k.startswith("domain_classifier.") for k in report.missing)


def test_freeze_keeps_modules_fixed_and_their_norms_in_eval(problem):
    model = build(problem, transfer={"freeze": ["network.encoder"], "lr": {"network.decoder.head": 0.5}})
    encoder = model.network.encoder
    assert all(not p.requires_grad for p in encoder.parameters())
    assert all(p.requires_grad for p in model.network.decoder.parameters())
    model.train()
    assert not any(m.training for m in encoder.modules()) and model.network.decoder.training
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    optimizer = model.configure_optimizers()
    rates = sorted(group["lr"] for group in optimizer.param_groups)
    assert rates == [1.0e-4, 0.5]  # AdamW's default for the rest, 0.5 for the output head
    head = {id(p) for p in model.network.decoder.head.parameters()}
    assert {id(p) for g in optimizer.param_groups if g["lr"] == 0.5 for p in g["params"]} == head
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(p.requires_grad for p in model.parameters())
    batch = testing.tiny_batch("train")
    for _ in range(2):
        optimizer.zero_grad()
        model.training_step(batch, 0).backward()
        optimizer.step()
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, before[key]), key  # weights and BatchNorm statistics


def test_checkpoint_of_a_transferred_model_loads_without_its_source(problem, source, tmp_path):
    trained, path = source
    model = build(problem, transfer={"init_from": path, "freeze": ["network.encoder"]})
    assert model.hparams["transfer"] == {"freeze": ["network.encoder"]}
    own = save(model, tmp_path / "own.ckpt")
    (tmp_path / "source.ckpt").unlink()
    restored = type(model).load_from_checkpoint(own, map_location="cpu")
    for name, tensor in restored.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    assert not any(p.requires_grad for p in restored.network.encoder.parameters())


@pytest.mark.parametrize("transfer, key, fragment", [
    ({"freeze": ["network.encodr"]}, "transfer.freeze", "did you mean 'network.encoder'"),
    ({"lr": {"network.nothing": 0.1}}, "transfer.lr", "no module or parameter 'network.nothing'"),
    ({"lr": {"network.decoder": -1.0}}, "transfer.lr.network.decoder", "learning rate > 0"),
    ({"parts": ["network.head"], "init_from": "SOURCE"}, "transfer.parts", "no module or weight 'network.head'"),
    ({"init_from": "MISSING"}, "transfer.init_from", "no checkpoint at"),
])
def test_bad_transfer_settings_are_refused(problem, source, tmp_path, transfer, key, fragment):
    _, path = source
    transfer = {k: (v.replace("SOURCE", path).replace("MISSING", str(tmp_path / "none.ckpt")) if isinstance(v, str) else v)
                for k, v in transfer.items()}
    with pytest.raises(ConfigError, match=fragment) as err:
        build(problem, transfer=transfer)
    assert err.value.key == f"model.{key}"


def experiment(tmp_path, model, data=None):
    path = tmp_path / "transfer.yaml"
    values = testing.tiny_experiment(model, data=data, run_dir=tmp_path / "runs")
    path.write_text(yaml.safe_dump(values))
    return str(path)


@pytest.mark.parametrize("case, fragment", [
    ("network", "checkpoint holds another network"),
    ("grid", "trained on another survey grid (velocity [NZ, NX] [16, 16] there, [16, 20] here)"),
    ("freeze", "no module or parameter 'encoder'"),
    ("unknown", "unknown parameter 'freez'"),
])
def test_fwi_run_refuses_bad_transfer_in_one_line(tmp_path, capsys, source, case, fragment):
    _, path = source
    model = {"name": "supervised", "network": dict(NETWORK), "transfer": {"init_from": path}}
    data = None
    if case == "network":
        model["network"] = {"name": "tiny", "width": 6}
    elif case == "grid":
        data = testing.tiny_data_config(survey={**testing.TINY_SURVEY, "nx": 20, "n_receivers": 16})
    elif case == "freeze":
        model["transfer"] = {"freeze": ["encoder"]}
    else:
        model["transfer"] = {"freez": ["network"]}
    status = main([experiment(tmp_path, model, data), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "key 'model.transfer." in err and fragment in err, err


def test_transfer_settings_are_a_plain_dataclass():
    assert TransferSettings(freeze=["network"]).freeze == ["network"]
