"""`fwi-run list NAME` shows parameters with type, default and description; `--print-config`
fills in component defaults; both read the validator's signature."""

from __future__ import annotations

import yaml

from fwi_lightning.cli import main
from fwi_lightning.listing import parameter_docs
from fwi_lightning.testing import tiny_data_config, tiny_experiment


def test_list_inversionnet_prints_parameters_with_types_and_defaults(capsys):
    assert main(["list", "inversionnet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("inversionnet (network, fwi-lightning")
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"channels", "width", "norm"}  # problem is injected, not listed
    assert "list of int = [32, 64, 128, 256, 512]" in rows["channels"] and "the five widths" in rows["channels"]
    assert "int or null = null" in rows["width"]
    assert "one of 'batch', 'none' = batch" in rows["norm"]


def test_list_shows_units_required_parameters_and_dataclass_fields(capsys):
    assert main(["list", "model_file"]) == 0
    out = capsys.readouterr().out
    assert "file_spacing  float, required  -- the file's grid spacing in m." in out
    assert main(["list", "simulated"]) == 0
    out = capsys.readouterr().out
    assert "survey.spacing" in out and "grid spacing in m" in out
    assert "families        velocity mapping = null" in out


def test_list_unknown_name_exits_2_with_did_you_mean(capsys):
    assert main(["list", "invresionnet"]) == 2
    err = capsys.readouterr().err
    assert err == "error: no component or group named 'invresionnet' (did you mean 'inversionnet'?); `fwi-run list` shows them all\n"


def test_list_group_still_lists_the_group(capsys):
    assert main(["list", "networks"]) == 0
    assert "inversionnet" in capsys.readouterr().out


def test_docstring_parser_reads_several_names_and_continuations():
    def component(a, b, c, d):
        """One line.

        Args:
            a: first, in m/s.
            b, c: shared
                description over two lines.
            d (int): typed.

        Returns:
            nothing: not a parameter.
        """

    assert parameter_docs(component) == {"a": "first, in m/s.", "b": "shared description over two lines.",
                                         "c": "shared description over two lines.", "d": "typed."}


def test_print_config_fills_in_component_defaults(tmp_path, capsys):
    values = tiny_experiment({"name": "supervised", "network": {"name": "inversionnet", "width": 4}},
                             data=tiny_data_config(families={"flatvel": 1.0}))
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(values))
    assert main([str(path), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["network"] == {"name": "inversionnet", "channels": [32, 64, 128, 256, 512], "width": 4, "norm": "batch"}
    assert printed["data"]["numerics"] == "fast" and printed["data"]["cache"] is False
    assert printed["data"]["survey"]["accuracy"] == 4 and printed["data"]["survey"]["nz"] == 16
    assert printed["data"]["families"]["flatvel"]["weight"] == 1.0 and "variant" in printed["data"]["families"]["flatvel"]
    # what it prints runs as it is
    again = tmp_path / "printed.yaml"
    again.write_text(yaml.safe_dump(printed))
    assert main([str(again), "--dry-run"]) == 0


def test_verbose_group_listing_adds_each_components_parameters(capsys):
    assert main(["list", "losses", "--verbose"]) == 0
    lines = capsys.readouterr().out.splitlines()
    ssim = next(i for i, line in enumerate(lines) if line.split()[0] == "ssim")
    assert lines[ssim + 1].split()[:4] == ["window", "int", "=", "11"]
    assert lines[ssim + 2].split()[:4] == ["sigma", "float", "=", "1.5"]


def test_listing_into_a_closed_pipe_ends_quietly():
    """`fwi-run list | head -1`: the reader closes the pipe early; no BrokenPipeError traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "fwi_lightning", "list", "--verbose"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, stderr
    assert first.startswith(b"paradigms:")
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
