"""`fwi-run`: run an experiment, or list the registered components.

    fwi-run FILE.yaml [key=value ...]     fit, then test the best checkpoint
    fwi-run FILE.yaml --dry-run           validate and build everything, train nothing
    fwi-run FILE.yaml --print-config      print the resolved config, component defaults filled in
    fwi-run FILE.yaml resume=RUN --allow-changed-config   resume although model/data settings changed
    fwi-run test RUN_DIR|CKPT [FILE.yaml] [key=value ...]   evaluate a trained model, never train
    fwi-run list [GROUP] [--verbose]      registered components (imports nothing without --verbose;
                                          with it, each one's description and parameters)
    fwi-run list NAME                     one component's parameters: type, default, description
    fwi-run predict RUN_DIR|CKPT INPUT [options]   velocity for SEG-Y / npy / npz gathers: npy, SEG-Y, PNG
    fwi-run compare RUN_DIR... [--out DIR]   differing config values and metrics (Markdown, CSV), prediction grid
    fwi-run export FILE.yaml OUT_DIR [key=value ...] [--samples N]   an OpenFWI-layout dataset, resumable

Every user mistake ends with one line on stderr and exit status 2. This module imports
neither torch nor Lightning at module level, so `--help` and `list` answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from fwi_lightning import __version__
from fwi_lightning.errors import FWIError

EXIT_USAGE = 2


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fwi-run",
        description="Run a deep-learning FWI experiment from one YAML file. "
        "`fwi-run test RUN_DIR|CKPT [FILE.yaml]` evaluates a trained model; "
        "`fwi-run list [GROUP|NAME] [--verbose]` lists the registered components or one component's parameters; "
        "`fwi-run predict RUN INPUT` predicts velocity for SEG-Y / npy gathers; `fwi-run compare RUN_DIR...` compares "
        "runs; `fwi-run export FILE.yaml OUT_DIR --samples N` writes an OpenFWI-layout dataset.",
        epilog="examples:\n  fwi-run experiments/quickstart.yaml\n"
        "  fwi-run experiments/quickstart.yaml trainer.max_epochs=1 model.network.width=8\n"
        "  fwi-run experiments/quickstart.yaml callbacks.figures=null --dry-run\n  fwi-run list networks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="experiment YAML file (or 'list', 'test', 'predict', 'compare', 'export': see above)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides; key=null removes a component")
    parser.add_argument("--dry-run", action="store_true", help="validate and build every component, print a summary, train nothing")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config, with every component's defaults, and exit")
    parser.add_argument("--allow-changed-config", action="store_true",
                        help="with resume: continue although the model/data settings differ from the resumed run's")
    parser.add_argument("--version", action="version", version=f"fwi-lightning {__version__}")
    return parser


def _test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fwi-run test",
        description="Evaluate a trained model on the test split of any data config; never trains. Writes a run folder "
        "with summary.json, samples.csv (metrics per sample) and figures.",
        epilog="examples:\n  fwi-run test runs/quickstart/quickstart-20260101-120000\n"
        "  fwi-run test runs/quickstart/quickstart-20260101-120000 '~data.families' data.families.marmousi.name=model_file "
        "data.families.marmousi.path=marmousi.npy data.families.marmousi.file_spacing=4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="RUN_DIR|CKPT", help="a run folder (its best checkpoint) or a .ckpt file")
    parser.add_argument("rest", nargs="*", metavar="[FILE.yaml] [key=value]",
                        help="experiment file giving the data (default: the run's config.yaml), then overrides")
    return parser


def _list_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fwi-run list", description="List registered components with their distribution and version, "
                                     "or one component's parameters with type, default and description.")
    parser.add_argument("group", nargs="?", metavar="GROUP|NAME",
                        help="one group (paradigms, networks, velocity, datamodules, losses, callbacks) or one component name")
    parser.add_argument("--verbose", "-v", action="store_true", help="load each component: add its description and any load error")
    return parser


def _predict_parser() -> argparse.ArgumentParser:
    from fwi_lightning.io.segy import DEFAULT_GROUP_BY
    from fwi_lightning.predict import FORMATS

    parser = argparse.ArgumentParser(
        prog="fwi-run predict",
        description="Predict the velocity model of recorded shot gathers with a trained run: SEG-Y (any sample format, "
        "shots grouped by a trace-header field), npy or npz [shots, time, receivers] or [N, shots, time, receivers] in; "
        "the velocity as npy, SEG-Y (one trace per lateral position, depth samples) and PNG out. The input must have the "
        "training survey's geometry, or be adapted to it by --shots, --receivers and --resample-time.",
        epilog="examples:\n  fwi-run predict runs/quickstart/quickstart-20260101-120000 line12.sgy\n"
        "  fwi-run predict run/ shots.npy --dt 0.002 --resample-time --shots 0:10:2 --output out/line12\n"
        "  fwi-run predict run/ line12.sgy --group-by EnergySourcePoint --refine 50",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="RUN_DIR|CKPT", help="a run folder (its best checkpoint) or a .ckpt file")
    parser.add_argument("input", metavar="INPUT", help="SEG-Y, npy or npz shot gathers")
    parser.add_argument("--output", "-o", metavar="PREFIX", help="output path prefix (default: INPUT's name + '-velocity', beside it)")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated output formats (default {','.join(FORMATS)})")
    parser.add_argument("--group-by", default=DEFAULT_GROUP_BY, metavar="FIELD", help=f"SEG-Y trace-header field naming each trace's shot (default {DEFAULT_GROUP_BY})")
    parser.add_argument("--dt", type=float, metavar="SECONDS", help="sample interval of npy/npz input (default: the training one), or of SEG-Y without one in its headers")
    parser.add_argument("--npz-key", metavar="NAME", help="the array of an npz input (default: 'data' or its only array)")
    parser.add_argument("--shots", metavar="SEL", help="use these shots, e.g. 0,2,4 or 0:10:2")
    parser.add_argument("--receivers", metavar="SEL", help="use these receivers (traces within each shot), e.g. 0:70")
    parser.add_argument("--resample-time", action="store_true", help="resample to the training sample interval, then cut or zero-pad to its length")
    parser.add_argument("--refine", type=int, default=0, metavar="N", help="refine the prediction by N iterations of classical FWI (the fwi paradigm)")
    parser.add_argument("--refine-lr", type=float, default=0.01, metavar="LR", help="Adam step of the refinement on the [-1, 1] velocity scale (default 0.01)")
    parser.add_argument("--batch-size", type=int, default=8, help="samples per network call (default 8)")
    parser.add_argument("--device", default="cpu", help="torch device of the network, e.g. cuda (default cpu)")
    return parser


def predict_command(argv: list[str]) -> int:
    """``fwi-run predict``: write the velocity files and print one line per file written."""
    from fwi_lightning.predict import PredictOptions, run_predict

    args = _predict_parser().parse_args(argv)
    options = PredictOptions(
        output=args.output, formats=args.formats.split(","), group_by=args.group_by, dt=args.dt, npz_key=args.npz_key,
        shots=args.shots, receivers=args.receivers, resample_time=args.resample_time, refine_iterations=args.refine,
        refine_lr=args.refine_lr, batch_size=args.batch_size, device=args.device,
    )
    written, notes = run_predict(args.checkpoint, args.input, options)
    _report(notes, written)
    return 0


def _report(notes: list[str], written: list, text: str = "") -> None:
    """Print `notes` to stderr, then `text` and one ``wrote PATH`` line per file written to stdout."""
    for note in notes:
        print(note, file=sys.stderr)
    print(text, end="")
    for path in written:
        print(f"wrote {path}")


def _compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fwi-run compare",
        description="Compare finished runs from their folders: a table of the config values that differ, the best "
        "validation and the test metrics (printed, and written as Markdown and CSV), and a figure grid of each run's "
        "prediction of the first test samples.",
        epilog="example:\n  fwi-run compare runs/flatvel/*/ --out comparisons/flatvel",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by fwi-run")
    parser.add_argument("--out", default="comparison", metavar="DIR", help="folder of comparison.md, comparison.csv, predictions.png (default ./comparison)")
    parser.add_argument("--samples", type=int, default=4, metavar="N", help="test samples per run in the figure grid (default 4)")
    parser.add_argument("--no-figure", action="store_true", help="the table only (no model is loaded, no data built)")
    return parser


def compare_command(argv: list[str]) -> int:
    """``fwi-run compare``: print the Markdown table, write it with the CSV and the figure grid."""
    from fwi_lightning.compare import run_compare

    args = _compare_parser().parse_args(argv)
    text, written, notes = run_compare(args.runs, args.out, args.samples, figure=not args.no_figure)
    _report(notes, written, text)
    return 0


def _export_parser() -> argparse.ArgumentParser:
    from fwi_lightning.export import OPENFWI_SAMPLES_PER_FILE

    parser = argparse.ArgumentParser(
        prog="fwi-run export",
        description="Write an OpenFWI-layout dataset (data1.npy [N, S, T, R], model1.npy [N, 1, NZ, NX], ...) from the "
        "experiment's simulated data section: any family mix and survey. Interrupted, it resumes at the first missing file "
        "pair when run again with the same settings. The openfwi data module reads the folder (data_dir: OUT_DIR).",
        epilog="examples:\n  fwi-run export experiments/supervised_flatvel.yaml datasets/flatvel --samples 2000\n"
        "  fwi-run export experiments/supervised_flatvel.yaml datasets/mix --samples 1000 --per-file 100 "
        "'data.families={flatvel: 1, curvefault: 1}' data.num_workers=2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE.yaml", help="experiment file whose data section (name: simulated) is exported")
    parser.add_argument("out", metavar="OUT_DIR", help="folder of the dataset")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.survey.nt=500")
    parser.add_argument("--samples", type=int, required=True, metavar="N", help="number of samples")
    parser.add_argument("--per-file", type=int, default=OPENFWI_SAMPLES_PER_FILE, metavar="M",
                        help=f"samples per file pair (default {OPENFWI_SAMPLES_PER_FILE}, OpenFWI's)")
    parser.add_argument("--split", default="train", choices=["train", "val", "test"], help="the split whose samples are written (default train)")
    parser.add_argument("--device", metavar="DEVICE", help="simulate on this torch device, e.g. cuda (default: on CPU in the data module's loader processes)")
    return parser


def export_command(argv: list[str]) -> int:
    """``fwi-run export``: write the dataset; print the files and how many were already there."""
    from fwi_lightning.config import load_config, validate
    from fwi_lightning.export import run_export

    args = _export_parser().parse_intermixed_args(argv)
    cfg = validate(load_config(args.file, args.overrides))
    files, resumed = run_export(cfg, args.out, args.samples, args.per_file, args.split, args.device)
    if resumed:
        print(f"resumed: {resumed} of {len(files)} file pairs were complete", file=sys.stderr)
    print(f"wrote {len(files)} file pairs ({args.samples} samples) to {args.out}")
    return 0


def _is_group(word: str) -> bool:
    from fwi_lightning import registry

    return word in registry.GROUPS


def list_components(group: str | None, verbose: bool, out=None) -> None:
    """Print the registered components, one per line, grouped; `verbose` loads each and
    adds its description and its parameters (as `fwi-run list NAME` shows them)."""
    out = out or sys.stdout
    from fwi_lightning import registry

    groups = [group] if group else list(registry.GROUPS)
    for g in groups:
        if registry.strict_plugins():
            registry.warn_broken(g)
        found = registry.entries(g)
        print(f"{g}:", file=out)
        width = max(len(e.name) for e in found)
        for e in found:
            line = f"  {e.name:<{width}}  {e.distribution} {e.version}"
            component = None
            if verbose:
                try:
                    component = registry.load(g, e.name)
                    line += f"  {registry.describe(component)}"
                except FWIError as exc:
                    if registry.strict_plugins():
                        raise
                    line += f"  LOAD ERROR: {exc.message}"
            print(line, file=out)
            if component is not None:
                from fwi_lightning.listing import describe_parameters

                describe_parameters(component, g, out, indent="      ")


def run_experiment(file: str, overrides: list[str], *, dry_run: bool = False, print_config: bool = False,
                   allow_changed: bool = False) -> int:
    """Load, validate and run one experiment; the last line printed is ``run dir: <path>``."""
    from fwi_lightning.config import load_config, validate

    cfg = load_config(file, overrides)
    if print_config:
        from omegaconf import OmegaConf

        from fwi_lightning.listing import with_defaults

        print(OmegaConf.to_yaml(OmegaConf.create(with_defaults(validate(cfg).values))), end="")
        return 0
    validate(cfg)
    from fwi_lightning import runner

    if dry_run:
        for key, value in runner.dry_run(cfg).items():
            print(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")
        return 0
    run = runner.Run.build(cfg, allow_changed=allow_changed)
    return _finish(run, run.fit, run.test)


def test_checkpoint(target: str, rest: list[str]) -> int:
    """``fwi-run test``: evaluate a checkpoint on a config's test split; never trains."""
    from fwi_lightning.config import validate
    from fwi_lightning.evaluate import find_checkpoint, evaluation_config

    checkpoint = find_checkpoint(target)
    file = rest[0] if rest and "=" not in rest[0] and not rest[0].startswith("~") else None
    cfg = validate(evaluation_config(checkpoint, file, rest[1:] if file else rest))
    from fwi_lightning import runner

    run = runner.Run.build(cfg, checkpoint=checkpoint)
    return _finish(run, run.evaluate)


def _finish(run, *stages) -> int:
    """Run `stages` (fit and test, or evaluate), then summarise; a run that fails before
    its first checkpoint removes its folder. The last line printed is ``run dir: <path>``."""
    for notice in run.notices:
        print(notice, file=sys.stderr)
    try:
        for stage in stages:
            stage()
    except BaseException:
        run.discard()
        raise
    if not run.trainer.is_global_zero:
        return 0
    run.write_summary()
    run.close()
    print_metrics(run.results)
    print(f"run dir: {run.run_dir}")
    return 0


def print_metrics(results: dict[str, float], out=None) -> None:
    """The final metrics: a table in a terminal (rich), ``key: value`` lines otherwise (for scripts)."""
    out = out or sys.stdout
    if not out.isatty() or os.environ.get("CI"):
        for key, value in sorted(results.items()):
            print(f"{key}: {value:.6g}", file=out)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="final metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in sorted(results.items()):
        table.add_row(key, f"{value:.6g}")
    Console(file=out).print(table)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `fwi-run` and `python -m fwi_lightning`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "list":
            args = _list_parser().parse_args(argv[1:])
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                if args.group and not _is_group(args.group):
                    from fwi_lightning.listing import print_component

                    print_component(args.group)
                else:
                    list_components(args.group, args.verbose)
            return 0
        if argv and argv[0] == "export":
            return export_command(argv[1:])
        if argv and argv[0] == "compare":
            return compare_command(argv[1:])
        if argv and argv[0] == "predict":
            return predict_command(argv[1:])
        if argv and argv[0] == "test":
            args = _test_parser().parse_intermixed_args(argv[1:])
            return test_checkpoint(args.checkpoint, args.rest)
        args = _run_parser().parse_intermixed_args(argv)
        return run_experiment(args.file, args.overrides, dry_run=args.dry_run, print_config=args.print_config,
                              allow_changed=args.allow_changed_config)
    except FWIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fwi-run list | head` closed the pipe: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 0
