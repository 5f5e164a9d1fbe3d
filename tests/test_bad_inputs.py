"""A table of bad inputs: each ends with exit status 2 and one line that names the problem,
no traceback, and nothing written before is lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fwi_lightning.cli import main

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / "experiments" / "quickstart.yaml")
#: A small quickstart: the checks fire before any of this is simulated or trained.
SMALL = ["trainer.max_epochs=1", "data.sizes.train=8", "data.sizes.val=4", "data.sizes.test=4", "logger=csv", "data.num_workers=0"]


def _files(tmp: Path) -> dict[str, str]:
    """Bad files of each kind, written into `tmp`."""
    (tmp / "not_yaml.yaml").write_text("model: {name: supervised\ndata: [\n")
    (tmp / "list.yaml").write_text("- model\n- data\n")
    (tmp / "with_missing_base.yaml").write_text(f"base: [{tmp / 'nowhere.yaml'}]\nseed: 1\n")
    (tmp / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(tmp / "cube.npy", np.full((4, 40, 40), 2000.0, dtype=np.float32))
    np.save(tmp / "gathers_3d.npy", np.zeros((2, 5, 70), dtype=np.float32))
    (tmp / "corrupt.ckpt").write_bytes(b"not a checkpoint")
    (tmp / "empty_data").mkdir()
    openfwi = "schema_version: 1\nmodel: {{name: supervised, network: {{name: tiny}}}}\ndata: {{name: openfwi, data_files: {{train: {0}, val: {0}, test: {0}}}}}\n"
    (tmp / "openfwi_no_files.yaml").write_text(openfwi.format("/nonexistent/data*.npy"))
    (tmp / "openfwi_misshaped.yaml").write_text(openfwi.format(tmp / "gathers_3d.npy"))
    return {p.name: str(p) for p in tmp.iterdir()}


# (id, file or None for quickstart, overrides, fragments the one-line message must hold)
CASES = [
    # YAML syntax and files
    ("yaml-syntax", "not_yaml.yaml", [], ["cannot parse YAML", "line"]),
    ("yaml-not-mapping", "list.yaml", [], ["must be a mapping"]),
    ("missing-config-file", "missing.yaml", [], ["no such config file"]),
    ("missing-base-file", "with_missing_base.yaml", [], ["no such config file", "nowhere.yaml"]),
    ("override-without-equals", None, ["trainer.max_epochs"], ["key=value"]),
    # unknown keys and names
    ("unknown-top-level", None, ["traner.max_epochs=1"], ["'trainer'"]),
    ("misspelled-network-key", None, ["model.network.chanels=[4]"], ["model.network.chanels", "'channels'"]),
    ("unknown-network", None, ["model.network.name=inversionet"], ["'inversionnet'", "model.network.name"]),
    ("unknown-paradigm", None, ["model.name=supervize"], ["'supervised'"]),
    ("unknown-datamodule", None, ["data.name=simulate"], ["'simulated'"]),
    ("unknown-loss", None, ["model.losses.ssmi=1.0"], ["'ssim'"]),
    ("unknown-callback", None, ["callbacks.figurs={}"], ["'figures'"]),
    ("unknown-family", None, ["data.families.flatvell=1.0"], ["'flatvel'"]),
    ("unknown-trainer-arg", None, ["trainer.max_epoch=1"], ["'max_epochs'"]),
    ("unknown-survey-key", None, ["data.survey.nzz=16"], ["data.survey.nzz", "'nz'"]),
    ("losses-as-list", None, ["model.losses=[l1]"], ["mapping keyed by component name"]),
    # wrong types and ranges
    ("seed-not-int", None, ["seed=one"], ["seed must be an integer"]),
    ("schema-version", None, ["schema_version=3"], ["schema_version must be 1"]),
    ("network-width-type", None, ["model.network.channels=wide"], ["model.network.channels", "expects list"]),
    ("velocity-range-reversed", None, ["data.velocity_range=[4500,1500]"], ["velocity_range", "v_min < v_max"]),
    ("numerics-unknown", None, ["data.numerics=fats"], ["data.numerics", "'fast'"]),
    ("checkpoint-mode", None, ["checkpoint.mode=best"], ["one of 'min', 'max'"]),
    ("optimizer-unknown", None, ["model.optimizer.name=adamm"], ["adamm", "'adam"]),
    # impossible surveys
    ("source-outside-grid", None, ["data.survey.n_shots=null", "data.survey.source_x=[5000.0]"], ["data.survey.source_x", "outside the grid"]),
    ("courant-unstable", None, ["data.survey.courant_number=2.0"], ["data.survey.courant_number", "unstable"]),
    ("grid-too-coarse", None, ["data.survey.spacing=200.0"], ["grid too coarse"]),
    ("dt-aliasing", None, ["data.survey.dt=0.03"], ["aliases"]),
    ("negative-size", None, ["data.survey.nz=-4"], ["data.survey.nz", "> 0"]),
    ("receiver-below-grid", None, ["data.survey.receiver_depth=5000.0"], ["data.survey.receiver_depth", "below the grid"]),
    # missing, corrupt and mis-shaped data files
    ("model-file-missing", None, ["data.families={model_file: {path: /nonexistent/m.npy, file_spacing: 10.0}}"], ["/nonexistent/m.npy"]),
    ("model-file-corrupt", None, ["data.families={model_file: {path: @corrupt.npy, file_spacing: 10.0}}"], ["corrupt.npy"]),
    ("model-file-3d", None, ["data.families={model_file: {path: @cube.npy, file_spacing: 10.0}}"], ["cube.npy", "2"]),
    ("marmousi-missing", None, ["data.families={marmousi: 1.0}", "ENV:FWI_LIGHTNING_DATA=@empty_data"], ["marmousi_vp_z751_x2301_d4m_f32.npy", "FWI_LIGHTNING_DATA"]),
    ("openfwi-no-files", "openfwi_no_files.yaml", [], ["/nonexistent/data*.npy"]),
    ("openfwi-misshaped", "openfwi_misshaped.yaml", [], ["gathers_3d.npy", "[N, shots, time, receivers]"]),
    # checkpoints
    ("resume-nothing", None, ["resume=last"], ["no earlier run"]),
    ("resume-missing", None, ["resume=/nonexistent/last.ckpt"], ["no checkpoint at /nonexistent/last.ckpt"]),
    ("resume-corrupt", None, ["resume=@corrupt.ckpt"], ["corrupt.ckpt", "not a readable checkpoint"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_exit_2(case, tmp_path, monkeypatch, capsys):
    _id, file, overrides, fragments = case
    files = _files(tmp_path)
    runs = tmp_path / "runs"
    earlier = runs / "quickstart" / "quickstart-earlier"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text('{"kept": true}')
    args = []
    for item in overrides:
        for name, path in files.items():
            item = item.replace(f"@{name}", path)
        if item.startswith("ENV:"):
            var, _, value = item[4:].partition("=")
            monkeypatch.setenv(var, value)
        else:
            args.append(item)
    config = files.get(file, str(tmp_path / file)) if file else QUICKSTART
    small = SMALL if file is None else ["logger=csv"]
    status = main([config, *small, f"run_dir={runs}", *args])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err, err
    assert (earlier / "summary.json").read_text() == '{"kept": true}'
    assert [p.name for p in runs.rglob("*") if p.is_dir()] == ["quickstart", "quickstart-earlier"]


def test_the_same_command_without_the_bad_input_builds(tmp_path, capsys):
    # The control for the table: the quickstart with the table's fixed overrides is valid,
    # so each case above fails because of its own bad input.
    runs = tmp_path / "runs"
    status = main([QUICKSTART, *SMALL, f"run_dir={runs}", "--dry-run"])
    assert status == 0, capsys.readouterr().err
    assert not runs.exists()
