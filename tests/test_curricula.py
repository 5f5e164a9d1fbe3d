"""Curriculum callbacks: the low-pass filter, the difficulty sampler, schedules followed by the
data module's knobs during a fit with workers, and a resume that continues them."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from fwi_lightning import registry
from fwi_lightning.callbacks.curricula import ApertureCurriculum, FamilyCurriculum, FrequencyCurriculum, NoiseCurriculum, TaskCurriculum
from fwi_lightning.callbacks.difficulty import DifficultyCurriculum
from fwi_lightning.callbacks.resume import RandomState
from fwi_lightning.callbacks.schedules import Schedule
from fwi_lightning.cli import main
from fwi_lightning.data.simulated import SimulatedDataModule
from fwi_lightning.errors import ConfigError
from fwi_lightning.physics import Survey
from fwi_lightning.physics.filters import bandpass
from fwi_lightning.testing import TINY_NETWORK

SURVEY = Survey(nz=16, nx=16, spacing=10.0, nt=120, dt=0.002, peak_freq=15.0, n_shots=2, n_receivers=16)
REPO = Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / "experiments" / "quickstart.yaml")


def module(**options):
    values = dict(seed=3, survey=SURVEY, families={"flatvel": 1.0, "curvevel": 1.0}, velocity_range=[1500.0, 4500.0],
                  sizes={"train": 8, "val": 2, "test": 2}, batch_size=2, reference_size=2)
    return SimulatedDataModule(**{**values, **options})


# -- the low-pass filter -------------------------------------------------------------------


def tone_gain_db(freq_hz: float, cutoff_hz: float, dt: float = 0.001, n: int = 4000) -> float:
    """Gain in dB of the low-pass at `cutoff_hz` on a sine of `freq_hz`: RMS out / RMS in over
    the middle half of a 4 s record (away from its ends)."""
    t = torch.arange(n, dtype=torch.float64) * dt
    tone = torch.sin(2 * math.pi * freq_hz * t)[None, None, :, None]  # [1, 1, T, 1]
    out = bandpass(tone, dt, None, cutoff_hz)
    middle = slice(n // 4, 3 * n // 4)
    rms = lambda x: float(x[0, 0, middle, 0].pow(2).mean().sqrt())
    return 20 * math.log10(rms(out) / rms(tone))


def test_low_pass_removes_40_db_one_octave_above_and_keeps_the_pass_band_within_1_db():
    # A stepped sine sweep from 3 octaves below to 2 octaves above the cut-off, quarter-octave steps.
    cutoff = 20.0
    sweep = [cutoff * 2 ** (k / 4) for k in range(-12, 9)]
    gains = {f: tone_gain_db(f, cutoff) for f in sweep}
    stop = {f: g for f, g in gains.items() if f >= 2 * cutoff - 1e-9}
    passing = {f: g for f, g in gains.items() if f <= 0.8 * cutoff}
    assert len(stop) == 5 and len(passing) == 11
    assert max(stop.values()) <= -40.0, stop
    assert max(abs(g) for g in passing.values()) <= 1.0, passing
    assert -4.0 < gains[cutoff] < -2.0  # -3 dB at the corner: a Butterworth


def test_cutoff_above_nyquist_is_refused_at_setup():
    dm = module()
    callback = FrequencyCurriculum({"kind": "step", "stages": [[0, 10.0], [2, 300.0]]})
    with pytest.raises(ConfigError) as info:
        callback.setup(SimpleNamespace(datamodule=dm), None, "fit")
    assert info.value.key == "schedule" and "Nyquist" in str(info.value) and "\n" not in str(info.value)
    assert dm.knobs()["bandpass"] is None  # restored after the check


# -- the difficulty sampler ------------------------------------------------------------------


def drawn(dm, epoch: int) -> list[int]:
    sampler = dm.train_dataloader().sampler
    sampler.set_epoch(epoch)
    return [index for index, _ in sampler]


def advance(callback, dm, epoch: int) -> None:
    callback.on_train_epoch_start(SimpleNamespace(datamodule=dm, current_epoch=epoch, global_step=0), None)


def test_hard_share_follows_its_schedule_deterministic_per_seed_and_resumable():
    schedule = {"kind": "linear", "start": 0.1, "end": 0.9, "length": 4}
    losses = {i: float(i) for i in range(40)}  # hard: 20..39 (above the median)
    runs = {}
    for seed in (3, 3, 4):
        dm = module(seed=seed, sizes={"train": 4000, "val": 2, "test": 2}, fresh_train=False)
        callback = DifficultyCurriculum(schedule)
        callback.setup(SimpleNamespace(datamodule=dm), None, "fit")
        advance(callback, dm, 0)
        assert dm.knobs()["index_weights"] is None  # nothing scored yet: the sampler's own indices
        assert drawn(dm, 0) == list(range(4000))
        callback.losses = dict(losses)
        shares = []
        for epoch in (1, 3, 5):
            advance(callback, dm, epoch)
            indices = drawn(dm, epoch)
            assert set(indices) <= set(losses)
            shares.append(np.mean([i >= 20 for i in indices]))
        assert shares == pytest.approx([0.3, 0.7, 0.9], abs=0.03)
        runs.setdefault(seed, []).append((indices, callback.state_dict(), dm.state_dict()))
    (first, state, dm_state), (again, _, _) = runs[3]
    assert first == again and first != runs[4][0][0]
    # resume: a fresh data module and callback from the saved states draw the same indices,
    # also from the middle of the epoch
    dm = module(seed=3, sizes={"train": 4000, "val": 2, "test": 2}, fresh_train=False)
    callback = DifficultyCurriculum(schedule)
    callback.load_state_dict(state)
    dm.load_state_dict(dm_state)
    advance(callback, dm, 5)  # the position already applied: the restored pool stays
    sampler = dm.train_dataloader().sampler
    sampler.set_epoch(5)
    sampler.skip = 1234
    assert [index for index, _ in sampler] == first[1234:]


def test_family_scores_give_the_hard_families_the_scheduled_share():
    dm = module(families={"flatvel": 2.0, "curvevel": 1.0, "curvefault": 1.0})
    callback = DifficultyCurriculum({"kind": "step", "stages": [[0, 0.2], [2, 0.6]]}, source="family",
                                    scores={"flatvel": 0, "curvevel": 1, "curvefault": 5})
    callback.setup(SimpleNamespace(datamodule=dm), None, "fit")
    for epoch, share in ((0, 0.2), (2, 0.6)):
        advance(callback, dm, epoch)
        assert dm.probabilities("train") == pytest.approx(((1 - share) * 2 / 3, (1 - share) / 3, share))


# -- the knobs during a fit with workers, and after a resume ----------------------------------


def curricula() -> list[Callback]:
    """One curriculum of each kind, schedules by epoch and by step (4 steps per epoch)."""
    return [
        FrequencyCurriculum({"kind": "linear", "start": 8.0, "end": 32.0, "length": 8, "by": "step"}, low_hz=2.0),
        NoiseCurriculum({"kind": "cosine", "start": 40.0, "end": 10.0, "length": 2}),
        ApertureCurriculum({"kind": "step", "stages": [[0, 0.08], [3, 0.16], [7, 0.24]], "by": "step"}, knob="record_time_s"),
        FamilyCurriculum({"kind": "step", "stages": [[0, {"flatvel": 1.0, "curvevel": 0.0}], [1, {"flatvel": 0.0, "curvevel": 1.0}]]}),
        DifficultyCurriculum({"kind": "linear", "start": 0.0, "end": 1.0, "length": 2}),
        TaskCurriculum({"kind": "step", "stages": [[0, {"l1": 1.0, "l2": 0.0}], [5, {"l1": 1.0, "l2": 0.5}]], "by": "step"}),
    ]


class Recorder(Callback):
    """The effective settings of every training batch: knobs, loss weights, served families and
    the last sample recorded (a mask: nothing after the record time)."""

    def __init__(self):
        self.rows = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        knobs = trainer.datamodule.knobs()
        dt = pl_module.problem.survey.dt
        recorded = batch["data"].abs().amax(dim=(0, 1, 3)) > 0  # [T]
        self.rows.append({
            "step": trainer.global_step, "epoch": trainer.current_epoch, "bandpass": knobs["bandpass"],
            "snr_db": knobs["snr_db"], "record_time_s": knobs["record_time_s"], "weights": dict(pl_module.criterion.weights),
            "families": batch["family"].tolist(), "indices": batch["index"].tolist(),
            "last_sample_s": float(torch.nonzero(recorded).max()) * dt,
        })


def fit(tmp: Path, callbacks: list[Callback], max_epochs: int = 3, ckpt_path=None, **options) -> Recorder:
    torch.manual_seed(0)
    dm = module(num_workers=2, fresh_train=False, snr_db=40.0, **options)
    model = registry.build("paradigms", {"name": "supervised", "network": TINY_NETWORK, "losses": {"l1": 1.0, "l2": 0.0}},
                           key="model", problem=dm.problem)
    recorder = Recorder()
    saver = ModelCheckpoint(dirpath=tmp, filename="{step}", every_n_train_steps=1, save_top_k=-1)
    trainer = Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[*callbacks, RandomState(), recorder, saver], deterministic=True)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return recorder


@pytest.mark.parametrize("cache", [False, True], ids=["workers", "workers+cache"])
def test_knobs_follow_every_schedule_with_workers_and_continue_after_a_resume(tmp_path, cache):
    schedules = {type(c).__name__: c.schedule for c in curricula()}
    rows = fit(tmp_path / "whole", curricula(), cache=cache).rows
    assert [r["step"] for r in rows] == list(range(12))
    for row in rows:
        step, epoch = row["step"], row["epoch"]
        assert row["bandpass"] == [2.0, pytest.approx(schedules["FrequencyCurriculum"].value(step))]
        assert row["snr_db"] == pytest.approx(schedules["NoiseCurriculum"].value(epoch))
        assert row["record_time_s"] == schedules["ApertureCurriculum"].value(step)
        assert row["record_time_s"] - 0.002 < row["last_sample_s"] <= row["record_time_s"]  # the mask acted on this batch
        assert row["weights"] == schedules["TaskCurriculum"].value(step)
        assert row["families"] == [min(epoch, 1)] * 2  # flatvel, then curvevel from epoch 1, whatever the prefetch
    assert rows[4]["bandpass"][1] == pytest.approx(20.0) and rows[5]["weights"]["l2"] == 0.5
    if not cache:  # (a cache serves its own items of the drawn family)
        assert {i for r in rows[:4] for i in r["indices"]} == set(range(8))  # epoch 0: the sampler's own indices
    assert len({i for r in rows[8:] for i in r["indices"]}) < 8  # epoch 2: all hard, drawn from the scored pool
    # resume in the middle of epoch 1 (after step 6) with fresh callbacks: the rest is the same
    resumed = fit(tmp_path / "resumed", curricula(), ckpt_path=str(tmp_path / "whole" / "step=6.ckpt"), cache=cache).rows
    assert resumed == rows[6:]


def test_unknown_knob_and_label_errors_list_what_there_is():
    dm = module()
    trainer = SimpleNamespace(datamodule=dm)
    with pytest.raises(ConfigError) as info:
        ApertureCurriculum({"kind": "step", "stages": [[0, 1.0]]}, knob="offset_m").setup(trainer, None, "fit")
    assert "no knob 'offset_m'" in str(info.value) and "max_offset_m" in str(info.value) and "index_weights" in str(info.value)
    model = SimpleNamespace(criterion=SimpleNamespace(weights={"l1": 1.0}))
    with pytest.raises(ConfigError) as info:
        TaskCurriculum({"kind": "step", "stages": [[0, {"ssim": 1.0}]]}).setup(trainer, model, "fit")
    assert "no loss 'ssim'" in str(info.value) and "its losses: l1" in str(info.value)


@pytest.mark.parametrize("override, fragment", [
    ("callbacks.noise_curriculum.schedule={kind: step, stages: [[0, 30], [4, 20], [2, 10]]}", "strictly increasing"),
    ("callbacks.aperture_curriculum={knob: max_offset, schedule: {kind: step, stages: [[0, 100]]}}", "no knob 'max_offset'"),
    ("callbacks.frequency_curriculum.schedule={kind: linear, start: 10, end: 400, length: 5}", "Nyquist"),
], ids=["stages-not-increasing", "unknown-knob", "cutoff-above-nyquist"])
def test_bad_curricula_exit_2_with_one_line(override, fragment, tmp_path, capsys):
    small = ["trainer.max_epochs=1", "data.sizes.train=8", "data.sizes.val=4", "data.sizes.test=4", "logger=csv",
             "data.num_workers=0", "data.reference_size=2", "data.cache=false", "callbacks.figures=null"]
    status = main([QUICKSTART, *small, f"run_dir={tmp_path}", override])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err


def test_aperture_shot_counts_spread_evenly_over_the_survey():
    callback = ApertureCurriculum({"kind": "linear", "start": 1, "end": 5, "length": 4}, knob="active_shots")
    model = SimpleNamespace(problem=SimpleNamespace(survey=SimpleNamespace(n_shots=5)))
    shots = {count: callback.knob_value(None, model, callback.schedule.value(count - 1)) for count in range(1, 6)}
    assert shots == {1: [0], 2: [0, 4], 3: [0, 2, 4], 4: [0, 1, 3, 4], 5: [0, 1, 2, 3, 4]}
    with pytest.raises(ConfigError):
        callback.knob_value(None, model, 6)


def test_a_curriculum_acts_on_one_stream_of_source_target_data():
    from fwi_lightning.data.combined import SourceTargetDataModule
    from fwi_lightning.testing import tiny_data_config

    dm = SourceTargetDataModule(seed=0, source=tiny_data_config(), target=tiny_data_config())
    trainer = SimpleNamespace(datamodule=dm, current_epoch=2, global_step=0)
    with pytest.raises(ConfigError) as info:
        NoiseCurriculum({"kind": "step", "stages": [[0, 30.0]]}).setup(trainer, None, "fit")
    assert "has no runtime knobs" in str(info.value) and "domain: source" in str(info.value)
    callback = NoiseCurriculum({"kind": "linear", "start": 30.0, "end": 10.0, "length": 4}, domain="source")
    callback.setup(trainer, None, "fit")
    callback.on_train_epoch_start(trainer, None)
    assert dm.source.knobs()["snr_db"] == 20.0 and dm.target.knobs()["snr_db"] is None
    assert dm.state_dict()["source"]["knobs"]["snr_db"] == 20.0  # saved with the checkpoint


def test_the_curriculum_experiment_validates_and_builds_its_curricula():
    from fwi_lightning.config import load_config, validate

    cfg = validate(load_config(str(REPO / "experiments" / "curriculum_curvefault.yaml")))
    built = registry.build_mapping("callbacks", cfg.values["callbacks"], key="callbacks")
    kinds = {type(callback).__name__ for callback, _ in built.values()}
    assert {"FrequencyCurriculum", "DifficultyCurriculum"} <= kinds
    assert cfg.values["model"]["name"] == "supervised"
