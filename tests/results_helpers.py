"""Helpers of the tests of using results (predict, SEG-Y, compare, export, W&B): a tiny
trained run and SEG-Y shot files written with segyio itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from fwi_lightning.testing import tiny_data_config, tiny_experiment

#: One epoch of two training batches on CPU.
TRAINER = {"max_epochs": 1, "accelerator": "cpu", "devices": 1, "limit_train_batches": 2, "log_every_n_steps": 1,
           "enable_progress_bar": False, "enable_model_summary": False}


def write_experiment(folder: Path, name: str = "tiny", width: int = 4, logger: dict | None = None,
                     data: dict | None = None) -> Path:
    """A tiny supervised experiment YAML (tiny preset, tiny network, no figures) in `folder`."""
    values = tiny_experiment({"name": "supervised", "network": {"name": "tiny", "width": width}},
                             data=data or tiny_data_config(), run_dir=folder / "runs")
    values.update(name=name, trainer=dict(TRAINER), logger=logger or {"name": "csv"})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def train(folder: Path, name: str = "tiny", **kwargs) -> Path:
    """Train a tiny experiment in this process with `fwi-run`; returns its run folder."""
    from fwi_lightning.cli import main

    assert main([str(write_experiment(folder, name, **kwargs))]) == 0
    runs = sorted((folder / "runs" / name).iterdir())
    assert len(runs) == 1
    return runs[0]


def load_direct(checkpoint: Path):
    """The trained supervised model built by hand from the checkpoint (not through fwi_lightning.predict)."""
    import torch

    from fwi_lightning.paradigms.supervised import Supervised
    from fwi_lightning.problem import Problem

    contents = torch.load(checkpoint, map_location="cpu", weights_only=False)
    hparams = dict(contents["hyper_parameters"])
    model = Supervised(problem=Problem.from_dict(hparams.pop("problem")), **hparams)
    model.load_state_dict(contents["state_dict"])
    return model.eval()


def write_shots_segy(path: Path, data: np.ndarray, dt: float, *, fmt: int = 1, endian: str = "big",
                     field: str = "FieldRecord", keys: list[int] | None = None, revision: int = 0) -> Path:
    """Shot gathers [S, T, R] as SEG-Y with segyio: one trace per (shot, receiver), shot s labelled
    `keys[s]` (default 101, 102, ...) in header `field`, sample format `fmt` (1 IBM float, 5 IEEE)."""
    import segyio

    shots, nt, receivers = data.shape
    keys = keys or [101 + s for s in range(shots)]
    spec = segyio.spec()
    spec.format = fmt
    spec.samples = np.arange(nt) * dt * 1000.0
    spec.tracecount = shots * receivers
    spec.endian = endian
    with segyio.create(str(path), spec) as f:
        f.bin.update({segyio.BinField.Interval: int(round(dt * 1e6)), segyio.BinField.Samples: nt,
                      segyio.BinField.Format: fmt, segyio.BinField.SEGYRevision: revision})
        for s in range(shots):
            for r in range(receivers):
                i = s * receivers + r
                f.header[i] = {getattr(segyio.TraceField, field): keys[s], segyio.TraceField.TRACE_SAMPLE_COUNT: nt,
                               segyio.TraceField.TRACE_SAMPLE_INTERVAL: int(round(dt * 1e6)),
                               segyio.TraceField.TRACE_SEQUENCE_FILE: i + 1}
                f.trace[i] = np.ascontiguousarray(data[s, :, r], dtype=np.float32)
    return path


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline W&B run file (``run-<id>.wandb``).

    The file is W&B's record log: a 7-byte header (``:W&B``, magic 0xBEE1, version), then
    LevelDB-log blocks of 32 KiB holding chunks with a 7-byte header (crc32, length,
    type: 1 full, 2 first, 3 middle, 4 last); a block's tail shorter than a header is padding.
    """
    import struct

    from wandb.proto import wandb_internal_pb2

    raw = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", raw[:7])
    assert ident == b":W&B" and magic == 0xBEE1, raw[:7]
    block, records, pending, pos = 32768, [], b"", 7
    while pos + 7 <= len(raw):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += block - pos % block
            continue
        chunk = raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records
