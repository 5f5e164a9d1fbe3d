"""Simulated and OpenFWI data modules: batches, determinism, ranks, epochs, caching, files."""

from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from fwi_lightning.data.normalisation import log_amplitude_range
from fwi_lightning.data.openfwi import OpenFWIDataModule
from fwi_lightning.data.sampling import ResumableLoader, SampleSampler
from fwi_lightning.data.simulated import SimulatedDataModule
from fwi_lightning.errors import ConfigError, DataError, RegistryError
from fwi_lightning.physics import Simulator, Survey
from fwi_lightning.physics.filters import bandpass

SURVEY = Survey(nz=16, nx=16, spacing=10.0, nt=120, dt=0.002, peak_freq=15.0, n_shots=2, n_receivers=16)


FAMILIES = {"flatvel": 1.0, "curvefault": 0.5}


def module(**overrides):
    options = dict(seed=3, survey=SURVEY, families=FAMILIES, sizes={"train": 8, "val": 6, "test": 4}, batch_size=4, snr_db=20.0, bandpass=[2.0, 40.0])
    return SimulatedDataModule(**{**options, **overrides})


def batches(loader):
    return [dict(b) for b in loader]


def served(dm, split):
    """The batches of `split` as a model receives them: after the data module's device hook."""
    return [dm.on_after_batch_transfer(dict(b), 0) for b in dm.dataloader(split)]


def same(first, second):
    return len(first) == len(second) and all(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(first, second))


def stub_trainer(rank=0, world=1):
    return SimpleNamespace(global_rank=rank, world_size=world, strategy=SimpleNamespace(root_device=torch.device("cpu")))


def test_batch_holds_simulated_filtered_gathers_of_its_velocities():
    dm = module(snr_db=None)
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert set(batch) == {"data", "velocity", "family", "index"}
    assert batch["data"].shape == (4, 2, 120, 16) and batch["data"].dtype == torch.float32
    assert batch["velocity"].shape == (4, 1, 16, 16) and batch["family"].dtype == torch.long
    assert batch["index"].tolist() == [0, 1, 2, 3]
    expected = bandpass(Simulator(SURVEY, (1500.0, 4500.0), "fast", step_buckets=True)(batch["velocity"][:, 0]), 0.002, 2.0, 40.0)
    assert torch.equal(batch["data"], expected)


def test_same_seed_gives_identical_batches_run_to_run_and_for_any_worker_count():
    reference = served(module(), "val")
    assert same(reference, served(module(), "val"))
    assert same(reference, served(module(num_workers=2), "val"))
    assert not same(reference, served(module(seed=4), "val"))


def test_device_hook_path_gives_the_same_numbers_as_the_loader_path():
    dm = module(simulate_on="device")
    velocity_only = batches(dm.val_dataloader())
    assert "data" not in velocity_only[0] and "noise_seed" in velocity_only[0]
    simulated = [dm.on_after_batch_transfer(b, 0) for b in velocity_only]
    assert same(simulated, served(module(), "val"))


def test_ranks_get_disjoint_samples():
    per_rank = []
    for rank in (0, 1):
        dm = module(sizes={"train": 8, "val": 5, "test": 4})
        dm.trainer = stub_trainer(rank, 2)
        per_rank.append([b for b in batches(dm.train_dataloader())])
    indices = [torch.cat([b["index"] for b in rank]).tolist() for rank in per_rank]
    assert not set(indices[0]) & set(indices[1]) and len(indices[0]) == len(indices[1]) == 4
    data = [torch.cat([b["data"] for b in rank]) for rank in per_rank]
    assert not any(torch.equal(a, b) for a in data[0] for b in data[1])


def test_validation_is_fixed_across_epochs_while_training_is_fresh():
    dm = module()
    train, val = dm.train_dataloader(), dm.val_dataloader()
    first_train, first_val = batches(train), batches(val)
    train.sampler.set_epoch(1)
    val.sampler.set_epoch(1)
    assert same(first_val, batches(val))
    second = torch.cat([b["index"] for b in batches(train)]).tolist()
    assert second == list(range(8, 16))
    fixed = module(fresh_train=False).train_dataloader()
    fixed.sampler.set_epoch(1)
    assert same(first_train, batches(fixed))


def test_sampler_splits_ranks_and_epochs_without_overlap():
    seen = set()
    for epoch in range(3):
        for rank in range(3):
            sampler = SampleSampler(10, rank, 3, fresh=True)
            sampler.set_epoch(epoch)
            indices = list(sampler)
            assert len(indices) == 4 and not seen & set(indices)
            seen |= set(indices)
    assert sorted(set(SampleSampler(5, 1, 2).__iter__())) == [0, 1, 3]  # padding wraps, like DistributedSampler


def test_shuffled_sampler_permutes_per_epoch_from_the_seed():
    def order(seed, epoch, rank=0, world=1):
        sampler = SampleSampler(10, rank, world, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert sorted(order(0, 0)) == list(range(10)) and order(0, 0) != list(range(10))
    assert order(0, 0) == order(0, 0) and order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)
    ranks = [order(0, 2, rank, 2) for rank in range(2)]
    assert sorted(ranks[0] + ranks[1]) == list(range(10))


class Indices(torch.utils.data.Dataset):
    def __len__(self):
        return 1000

    def __getitem__(self, index):
        return index


def test_resumable_loader_continues_an_epoch_after_the_batches_it_handed_out():
    def loader(epoch):
        sampler = SampleSampler(20, fresh=True)
        sampler.set_epoch(epoch)
        return ResumableLoader(Indices(), sampler, batch_size=3)

    whole = [b.tolist() for b in loader(1)]
    assert len(whole) == 7
    interrupted = loader(1)
    batches = iter(interrupted)
    seen = [next(batches).tolist() for _ in range(3)]
    state = interrupted.state_dict()
    assert state == {"epoch": 1, "batches": 3}

    resumed = loader(1)
    resumed.load_state_dict(state)
    rest = [b.tolist() for b in resumed]
    assert seen + rest == whole
    assert resumed.state_dict() == {"epoch": 1, "batches": 7}
    assert [b.tolist() for b in resumed] == whole  # only the first iteration skips

    other_epoch = loader(2)
    other_epoch.load_state_dict(state)  # a checkpoint of epoch 1 does not skip into epoch 2
    assert len(list(other_epoch)) == 7
    finished = loader(1)
    finished.load_state_dict({"epoch": 1, "batches": 7})  # saved at the end of the epoch
    assert len(list(finished)) == 7


def test_loaders_leave_the_global_rng_alone():
    before = torch.get_rng_state()
    for split in ("train", "val"):
        list(module(num_workers=0).dataloader(split))
    assert torch.equal(torch.get_rng_state(), before)


def test_family_weights_set_the_mix():
    dm = module(families={"flatvel": 1.0, "curvevel": 3.0}, sizes={"train": 400, "val": 1, "test": 1})
    dataset = dm.velocity_dataset("train")
    share = np.mean([dataset[i]["family"] for i in range(400)])
    assert share == pytest.approx(0.75, abs=0.07)
    only = module(families={"flatvel": 1.0, "style": 0.0}).velocity_dataset("train")
    assert all(only[i]["family"] == 0 for i in range(50))


def test_problem_data_range_comes_from_clean_reference_gathers():
    dm = module(reference_size=6)
    problem = dm.problem
    velocity = torch.stack([torch.from_numpy(dm.velocity_dataset("train")[i]["velocity"].numpy()) for i in range(6)])[:, 0]
    expected = log_amplitude_range([Simulator(SURVEY, (1500.0, 4500.0), "fast", step_buckets=True)(velocity)])
    assert problem.data_range == pytest.approx(expected)
    assert problem.extra["families"] == ["flatvel", "curvefault"]
    assert (problem.survey.courant_number, problem.survey.pml_width, problem.survey.max_vel) == (0.7, 10, 4500.0)
    assert problem.data_shape == (2, 120, 16) and problem.velocity_range == (1500.0, 4500.0)
    fresh = module(reference_size=6)
    fresh.load_state_dict(dm.state_dict())
    assert fresh.problem.data_range == problem.data_range


def test_cache_serves_the_same_samples_every_epoch():
    dm = module(cache=True)
    first = batches(dm.train_dataloader())
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    assert same(first, batches(loader))
    assert same(served(dm, "val"), served(module(), "val"))


@pytest.mark.parametrize(
    "overrides, error, words",
    [
        ({"sizes": {"tran": 4}}, ConfigError, "unknown split 'tran'"),
        ({"families": {"flatvel": -1.0}}, ConfigError, "weights >= 0"),
        ({"families": {"flatvell": 1.0}}, RegistryError, "did you mean 'flatvel'"),
        ({"velocity_range": [1500.0, 1000.0]}, ConfigError, "v_min < v_max"),
        ({"numerics": "fats"}, ConfigError, "did you mean 'fast'"),
        ({"bandpass": [30.0, 10.0]}, ConfigError, "below high corner"),
    ],
)
def test_configuration_mistakes_are_reported(overrides, error, words):
    with pytest.raises(error, match=words):
        module(**overrides)


class Recorder(pl.LightningModule):
    """Minimal model: a linear map from gathers to velocity, recording the indices it sees."""

    def __init__(self, shape):
        super().__init__()
        self.layer = torch.nn.Linear(int(np.prod(shape[0])), int(np.prod(shape[1])))
        self.shapes, self.seen = shape, {"train": [], "val": []}

    def _loss(self, batch):
        prediction = self.layer(batch["data"].flatten(1)).reshape(batch["velocity"].shape)
        return torch.nn.functional.mse_loss(prediction, batch["velocity"] / 1000.0)

    def training_step(self, batch, _):
        self.seen["train"].append((self.current_epoch, batch["index"].tolist()))
        return self._loss(batch)

    def validation_step(self, batch, _):
        self.seen["val"].append((self.current_epoch, batch["index"].tolist()))
        self.log("val/loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def fit(dm, model, **trainer):
    options = dict(accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    pl.Trainer(**{**options, **trainer}).fit(model, datamodule=dm)


def test_lightning_sets_the_epoch_and_runs_the_device_hook():
    dm = module(simulate_on="device", sizes={"train": 4, "val": 4, "test": 4})
    model = Recorder(((2, 120, 16), (1, 16, 16)))
    fit(dm, model)
    train = {epoch: idx for epoch, idx in model.seen["train"]}
    val = {epoch: idx for epoch, idx in model.seen["val"]}
    assert train == {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]} and val == {0: [0, 1, 2, 3], 1: [0, 1, 2, 3]}


def training_stub(epoch):
    """A trainer in its training loop at `epoch` (what the device hook reads)."""
    return SimpleNamespace(**vars(stub_trainer()), training=True, current_epoch=epoch)


def test_a_mirrored_sample_is_the_simulation_of_the_mirrored_model():
    dm = module(mirror=1.0, snr_db=None, families={"curvefault": 1.0})
    dm.trainer = training_stub(0)
    raw = next(iter(dm.train_dataloader()))
    batch = dm.on_after_batch_transfer(dict(raw), 0)
    assert torch.equal(batch["velocity"], raw["velocity"].flip(-1)) and not torch.equal(batch["velocity"], raw["velocity"])
    simulated = bandpass(Simulator(SURVEY, (1500.0, 4500.0), "fast", step_buckets=True)(batch["velocity"][:, 0]), 0.002, 2.0, 40.0)
    assert SURVEY.source_columns == [0, 15]
    assert torch.allclose(batch["data"], simulated, rtol=0, atol=1e-5 * simulated.abs().max())
    assert not torch.allclose(raw["data"], simulated, rtol=0, atol=1e-2 * simulated.abs().max())


def test_mirroring_draws_per_sample_and_epoch_and_leaves_validation_alone():
    dm = module(mirror=0.5, cache=True, sizes={"train": 64, "val": 8, "test": 4}, batch_size=64, families={"curvefault": 1.0})
    raw = next(iter(dm.train_dataloader()))
    mirrored = {}
    for epoch in (0, 1):
        dm.trainer = training_stub(epoch)
        served = dm.on_after_batch_transfer(dict(raw), 0)["velocity"]
        mirrored[epoch] = [not torch.equal(s, r) for s, r in zip(served, raw["velocity"])]
        dm.trainer = training_stub(epoch)  # again: the same draw
        assert torch.equal(dm.on_after_batch_transfer(dict(raw), 0)["velocity"], served)
    assert 20 <= sum(mirrored[0]) <= 44 and mirrored[0] != mirrored[1]
    dm.trainer = SimpleNamespace(**vars(stub_trainer()), training=False, current_epoch=0)
    val = next(iter(dm.val_dataloader()))
    assert torch.equal(dm.on_after_batch_transfer(dict(val), 0)["velocity"], val["velocity"])


class VelocityRecorder(Recorder):
    """`Recorder` that keeps the velocity of every batch it is served, by split."""

    def __init__(self, shape):
        super().__init__(shape)
        self.velocities = {"train": [], "val": []}

    def training_step(self, batch, _):
        self.velocities["train"].append(batch["velocity"])
        return self._loss(batch)

    def validation_step(self, batch, _):
        self.velocities["val"].append(batch["velocity"])


def test_lightning_mirrors_training_batches_only():
    dm = module(mirror=1.0, sizes={"train": 4, "val": 4, "test": 4}, families={"curvefault": 1.0}, fresh_train=False)
    model = VelocityRecorder(((2, 120, 16), (1, 16, 16)))
    fit(dm, model, max_epochs=1)
    raw = {split: next(iter(dm.dataloader(split)))["velocity"] for split in ("train", "val")}
    assert torch.equal(model.velocities["train"][0], raw["train"].flip(-1))
    assert torch.equal(model.velocities["val"][0], raw["val"])


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"mirror": 1.5}, "chance from 0 to 1"),
        ({"mirror": 0.5, "survey": Survey(nz=16, nx=70, spacing=10.0, nt=120, dt=0.002)}, r"column 34 mirrors to 35, where no source is"),
        ({"mirror": 0.5, "survey": Survey(nz=16, nx=16, spacing=10.0, nt=120, dt=0.002, n_shots=2, n_receivers=15)}, "receiver columns"),
    ],
)
def test_mirror_refuses_a_bad_chance_and_an_asymmetric_acquisition(overrides, words):
    with pytest.raises(ConfigError, match=words) as caught:
        module(**overrides)
    assert caught.value.key == "mirror"


def write_openfwi(folder, counts=(3, 2), shots=2, nt=50, receivers=8, nz=6, nx=8):
    """Tiny OpenFWI-format pairs data{i}.npy [N, S, T, R] and model{i}.npy [N, 1, NZ, NX]."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(counts, start=1):
        np.save(folder / f"data{i}.npy", rng.standard_normal((n, shots, nt, receivers)).astype(np.float32) * 10)
        np.save(folder / f"model{i}.npy", rng.uniform(1500, 4000, (n, 1, nz, nx)).astype(np.float32))
    return folder


def test_openfwi_module_reads_the_files_row_by_row(tmp_path):
    write_openfwi(tmp_path / "train")
    write_openfwi(tmp_path / "val", counts=(2,))
    dm = OpenFWIDataModule(
        seed=0, data_files={"train": str(tmp_path / "train/data*.npy"), "val": str(tmp_path / "val/data*.npy")},
        model_files={"train": str(tmp_path / "train/model*.npy"), "val": str(tmp_path / "val/model*.npy")}, batch_size=2,
        velocity_range=None,
    )
    rows = [(f, r) for f, n in ((1, 3), (2, 2)) for r in range(n)]
    seen = set()
    for batch in dm.train_dataloader():
        assert batch["data"].shape[1:] == (2, 50, 8) and batch["velocity"].shape[1:] == (1, 6, 8)
        for b, index in enumerate(batch["index"].tolist()):
            f, r = rows[index]
            assert np.array_equal(batch["data"][b].numpy(), np.load(tmp_path / f"train/data{f}.npy")[r])
            assert np.array_equal(batch["velocity"][b].numpy(), np.load(tmp_path / f"train/model{f}.npy")[r])
            seen.add(index)
    assert seen == set(range(5))
    problem = dm.problem
    assert problem.data_shape == (2, 50, 8) and problem.velocity_shape == (6, 8)
    models = np.concatenate([np.load(tmp_path / f"train/model{i}.npy") for i in (1, 2)])
    data = np.concatenate([np.load(tmp_path / f"train/data{i}.npy") for i in (1, 2)])
    assert problem.velocity_range == pytest.approx((models.min(), models.max()))
    assert problem.data_range == pytest.approx(log_amplitude_range([data]))
    model = Recorder(((2, 50, 8), (1, 6, 8)))
    fit(dm, model, max_epochs=1)
    assert len(model.seen["train"]) == 3 and len(model.seen["val"]) == 1


def test_openfwi_split_list_files(tmp_path):
    folder = write_openfwi(tmp_path / "flatvel")
    listing = tmp_path / "flatvel_train.txt"
    listing.write_text("".join(f"{folder}/data{i}.npy\t{folder}/model{i}.npy\n" for i in (1, 2)))
    dm = OpenFWIDataModule(split_files={"train": str(listing)}, batch_size=5)
    assert next(iter(dm.train_dataloader()))["data"].shape == (5, 2, 50, 8)
    with pytest.raises(ConfigError, match="no val files"):
        dm.val_dataloader()


def test_openfwi_file_problems_are_reported(tmp_path):
    folder = write_openfwi(tmp_path / "a")
    with pytest.raises(ConfigError, match="no training files"):
        OpenFWIDataModule(data_files={"val": str(folder / "data*.npy")})
    with pytest.raises(DataError, match="no files match"):
        OpenFWIDataModule(data_files={"train": str(tmp_path / "nothing*.npy")})
    np.save(folder / "model2.npy", np.ones((5, 1, 6, 8), np.float32))
    with pytest.raises(DataError, match="5 models but 2 gathers"):
        OpenFWIDataModule(data_files={"train": str(folder / "data*.npy")}, model_files={"train": str(folder / "model*.npy")})
    (folder / "data2.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data2.npy.*not an npy file"):
        OpenFWIDataModule(data_files={"train": str(folder / "data*.npy")})
