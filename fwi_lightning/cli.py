"""`fwi-run`: run an experiment, or list the registered components.

    fwi-run FILE.yaml [key=value ...]     fit, then test the best checkpoint
    fwi-run FILE.yaml --dry-run           validate and build everything, train nothing
    fwi-run FILE.yaml --print-config      print the resolved config, component defaults filled in
    fwi-run FILE.yaml resume=RUN --allow-changed-config   resume although model/data settings changed
    fwi-run test RUN_DIR|CKPT [FILE.yaml] [key=value ...]   evaluate a trained model, never train
    fwi-run list [GROUP] [--verbose]      registered components (imports nothing without --verbose;
                                          with it, each one's description and parameters)
    fwi-run list NAME                     one component's parameters: type, default, description

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
        "`fwi-run list [GROUP|NAME] [--verbose]` lists the registered components or one component's parameters.",
        epilog="examples:\n  fwi-run experiments/quickstart.yaml\n"
        "  fwi-run experiments/quickstart.yaml trainer.max_epochs=1 model.network.width=8\n"
        "  fwi-run experiments/quickstart.yaml callbacks.figures=null --dry-run\n  fwi-run list networks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="experiment YAML file (or 'list', 'test': see above)")
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
    for key, value in sorted(run.results.items()):
        print(f"{key}: {value:.6g}")
    print(f"run dir: {run.run_dir}")
    return 0


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
