"""``fwi-run export FILE.yaml OUT_DIR``: an OpenFWI-layout dataset from the ``simulated`` data module.

OpenFWI never released its data generator; this writes what it published, from any
family mix and survey the ``data`` section describes:

* ``data1.npy``, ``data2.npy``, ... [n, S, T, R] float32 gathers (shot, time, receiver),
  raw amplitudes after the data module's processing (band-pass, aperture, noise when
  configured; clean otherwise, like OpenFWI's);
* ``model1.npy``, ``model2.npy``, ... [n, 1, NZ, NX] float32 velocity in m/s;
* ``export.json``: the settings, so a resumed export refuses other ones.

File k holds samples ``(k-1) * per_file`` to ``k * per_file - 1`` of the chosen split,
the very samples training draws at those indices (family, model and noise from
(seed, split, index) alone), simulated by the data module's own loaders and operator
(worker processes when ``data.num_workers`` > 0). Each pair of files is written under
temporary names and renamed, so an interrupted export restarts at the first missing
pair; run again with more samples it extends the set (a short last file is rewritten).
The `openfwi` data module reads the folder as it is (``data_dir: OUT_DIR``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fwi_lightning.errors import ConfigError, DataError

#: Samples per file of OpenFWI's releases.
OPENFWI_SAMPLES_PER_FILE = 500
MANIFEST = "export.json"


def file_ranges(samples: int, per_file: int) -> list[tuple[int, int]]:
    """[start, stop) sample indices of each file, in order."""
    return [(start, min(start + per_file, samples)) for start in range(0, samples, per_file)]


def _check_counts(samples: Any, per_file: Any) -> None:
    for name, value in (("samples", samples), ("per_file", per_file)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"expected a whole number >= 1, got {value!r}", key=name)


#: Data-module settings that change how fast samples are made, not what they are: a resumed
#: export may change them (and the sample count, which extends or shortens the set).
NOT_CONTENT = ("num_workers", "batch_size", "cache", "simulate_on", "sizes", "reference_size", "fresh_train")


def _content(manifest: dict[str, Any]) -> dict[str, Any]:
    """The settings that determine the files' content."""
    out = {k: v for k, v in manifest.items() if k != "samples"}
    out["data"] = {k: v for k, v in (manifest.get("data") or {}).items() if k not in NOT_CONTENT}
    return out


def _manifest(cfg_values: dict[str, Any], split: str, samples: int, per_file: int, shapes: dict[str, list[int]]) -> dict[str, Any]:
    return {"format": "openfwi", "seed": cfg_values["seed"], "split": split, "samples": samples, "per_file": per_file,
            "shapes": shapes, "data": cfg_values["data"]}


def _check_folder(out: Path, manifest: dict[str, Any]) -> None:
    """Refuse a folder holding another export, or other OpenFWI files without a manifest.

    Raises:
        ConfigError: naming the settings that differ.
    """
    path = out / MANIFEST
    if path.is_file():
        previous, current = _content(json.loads(path.read_text())), _content(json.loads(json.dumps(manifest, default=str)))
        changed = sorted(k for k in current.keys() | previous.keys() if current.get(k) != previous.get(k))
        if changed:
            raise ConfigError(f"{out} holds an export with other settings ({', '.join(changed)} differ); resume with the same "
                              "settings, or export into another folder", file=str(path))
    elif any(out.glob("data*.npy")) or any(out.glob("model*.npy")):
        raise ConfigError(f"{out} already holds data*.npy / model*.npy of unknown origin (no {MANIFEST}); export into an empty folder",
                          file=str(out))


def _complete(out: Path, k: int, rows: int, shapes: dict[str, list[int]]) -> bool:
    """True when ``data{k}.npy`` and ``model{k}.npy`` exist whole with the expected shapes."""
    for kind in ("data", "model"):
        path = out / f"{kind}{k}.npy"
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            return False
        if list(array.shape) != [rows, *shapes[kind]]:
            return False
    return True


def build_datamodule(cfg: Any):
    """The ``simulated`` data module of the config.

    Raises:
        ConfigError: another data module (export simulates).
    """
    from fwi_lightning import registry

    if cfg.values["data"].get("name") != "simulated":
        raise ConfigError(f"export simulates its data: data.name must be 'simulated', not {cfg.values['data'].get('name')!r}",
                          key="data.name")
    with cfg.attributed():
        return registry.build("datamodules", cfg.values["data"], key="data", seed=cfg.values["seed"])


def simulate_rows(datamodule: Any, split: str, start: int, stop: int, advance=lambda n: None,
                  device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``start..stop-1`` of `split` as training draws them: (data [n, S, T, R], models [n, 1, NZ, NX]) float32.

    Simulated by the data module's operator in its collate (in its worker processes when it
    has them), or, with a `device` (e.g. ``cuda``), on that device from velocity-only
    batches, as the data module does on a GPU; then processed as ``on_after_batch_transfer``
    processes every batch.
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    from fwi_lightning.data.simulated import BatchCollate, worker_options

    dataset = datamodule.velocity_dataset(split, datamodule.configured_probabilities[split])
    loader = DataLoader(Subset(dataset, range(start, stop)), batch_size=datamodule.batch_size, shuffle=False,
                        collate_fn=BatchCollate(None if device else datamodule.operator), **worker_options(datamodule.num_workers))
    data, models = [], []
    with torch.no_grad():
        for batch in loader:
            if device:
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            batch = datamodule.on_after_batch_transfer(batch, 0)
            data.append(batch["data"].float().cpu().numpy())
            models.append(batch["velocity"].float().cpu().numpy())
            advance(len(batch["velocity"]))
    return np.concatenate(data), np.concatenate(models)


def _check_device(device: str) -> None:
    """Raises ConfigError: not a torch device, or one this machine lacks."""
    import torch

    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise ConfigError(f"cannot simulate on '{device}': {' '.join(str(exc).split())[:160]}", key="device") from None


def run_export(cfg: Any, out: str | Path, samples: int, per_file: int = OPENFWI_SAMPLES_PER_FILE,
               split: str = "train", device: str | None = None) -> tuple[list[Path], int]:
    """Write (or finish) the dataset; returns (the data files, how many pairs were already there).

    `device`: simulate there (e.g. ``cuda``) instead of in the loader's processes (`simulate_rows`).

    Raises:
        ConfigError: not the simulated module, bad counts or split, or a folder holding other files.
    """
    from fwi_lightning.data.families.base import SPLITS
    from fwi_lightning.io.atomic import AtomicFiles
    from fwi_lightning.progress import progress_bar

    _check_counts(samples, per_file)
    if split not in SPLITS:
        raise ConfigError(f"expected one of {', '.join(SPLITS)}, got {split!r}", key="split")
    datamodule = build_datamodule(cfg)
    if device:
        _check_device(device)
    survey = datamodule.operator.survey
    shapes = {"data": [survey.n_shots, survey.nt, survey.n_receivers], "model": [1, survey.nz, survey.nx]}
    out = Path(out)
    manifest = _manifest(cfg.values, split, samples, per_file, shapes)
    _check_folder(out, manifest)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp-*.npy"):  # temporary files of an interrupted run
        stale.unlink()
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    ranges = file_ranges(samples, per_file)
    done = [k for k, (start, stop) in enumerate(ranges, 1) if _complete(out, k, stop - start, shapes)]
    skipped = sum(ranges[k - 1][1] - ranges[k - 1][0] for k in done)
    with progress_bar(samples, "exporting", completed=skipped) as advance:
        for k, (start, stop) in enumerate(ranges, 1):
            if k in done:
                continue
            data, models = simulate_rows(datamodule, split, start, stop, advance, device)
            if not np.isfinite(data).all():
                raise DataError(f"samples {start}..{stop - 1} simulated to NaN or infinite amplitudes; check the survey numerics",
                                key="data.survey")
            with AtomicFiles() as files:
                np.save(files.temporary(out / f"data{k}.npy"), data)
                np.save(files.temporary(out / f"model{k}.npy"), models)
    return [out / f"data{k}.npy" for k in range(1, len(ranges) + 1)], len(done)

