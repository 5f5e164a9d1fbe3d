"""Survey: OpenFWI defaults, geometry options, validation messages, numerics presets, round trip."""

import deepwave
import pytest

from fwi_lightning.errors import ConfigError
from fwi_lightning.physics.survey import CRITICAL_COURANT, NUMERICS, Survey

TINY = dict(nz=16, nx=16, spacing=10.0, nt=120, dt=0.002, peak_freq=15.0, n_shots=2, n_receivers=16)


def test_defaults_reproduce_openfwi_geometry():
    s = Survey()
    assert (s.nz, s.nx, s.spacing, s.nt, s.dt, s.peak_freq) == (70, 70, 10.0, 1000, 0.001, 15.0)
    assert s.source_columns == [0, 17, 34, 52, 69]
    assert s.receiver_columns == list(range(70))
    assert (s.n_shots, s.n_receivers, s.source_row, s.receiver_row) == (5, 70, 1, 1)


def test_explicit_positions_and_spacing_resolve_counts():
    s = Survey(**{**TINY, "n_shots": None, "n_receivers": None}, source_x=[0.0, 52.0, 150.0], receiver_spacing=30.0)
    assert s.n_shots == 3 and s.source_columns == [0, 5, 15]  # 52 m snaps to cell 5
    assert s.receiver_columns == [0, 3, 6, 9, 12, 15] and s.n_receivers == 6


@pytest.mark.parametrize(
    "change, key, words",
    [
        ({"nz": 0}, "survey.nz", "> 0"),
        ({"spacing": -1.0}, "survey.spacing", "> 0"),
        ({"source_depth": 200.0}, "survey.source_depth", "below the grid"),
        ({"n_shots": None, "source_x": [0.0, 400.0]}, "survey.source_x", "outside the grid"),
        ({"n_receivers": 40}, "survey.n_receivers", "sharing a cell"),
        ({"source_x": [0.0]}, "survey.n_shots", "disagrees"),
        ({"accuracy": 3}, "survey.accuracy", "2, 4, 6 or 8"),
        ({"accuracy": 8, "courant_number": 0.8}, "survey.courant_number", "unstable"),
        ({"nt": 1.5}, "survey.nt", "whole number"),
    ],
)
def test_invalid_surveys_are_refused_with_the_key(change, key, words):
    with pytest.raises(ConfigError) as err:
        Survey(**{**TINY, **change})
    assert err.value.key == key and words in str(err.value)


def test_critical_courant_numbers_match_deepwave():
    for accuracy, value in CRITICAL_COURANT.items():
        assert value == pytest.approx(deepwave.discretisation.critical_courant_number(accuracy, propagator="scalar"))


def test_velocity_range_checks_stability_dispersion_and_aliasing():
    Survey(**TINY).check_velocity_range(1500.0, 4500.0)
    with pytest.raises(ConfigError, match="unstable"):
        Survey(**TINY, max_vel=4000.0).check_velocity_range(1500.0, 4500.0)
    with pytest.raises(ConfigError, match="grid too coarse"):  # 1500 / (15 * 25) = 4 cells per wavelength
        Survey(**{**TINY, "spacing": 25.0}).check_velocity_range(1500.0, 4500.0)
    with pytest.raises(ConfigError, match="aliases"):
        Survey(**{**TINY, "dt": 0.02}).check_velocity_range(1500.0, 4500.0)
    with pytest.raises(ConfigError, match="v_min < v_max"):
        Survey(**TINY).check_velocity_range(4500.0, 1500.0)


def test_numerics_presets_fill_only_unset_fields():
    fast = Survey(**TINY).with_numerics("fast")
    assert (fast.courant_number, fast.pml_width) == (NUMERICS["fast"]["courant_number"], NUMERICS["fast"]["pml_width"]) == (0.7, 10)
    assert Survey(**TINY, pml_width=30).with_numerics("fast").pml_width == 30
    accurate = Survey(**TINY).with_numerics("accurate")
    assert (accurate.courant_number, accurate.pml_width) == (None, None)  # deepwave's own defaults
    with pytest.raises(ConfigError, match="did you mean 'fast'"):
        Survey(**TINY).with_numerics("fats")


def test_step_ratio_matches_deepwave_cfl():
    s = Survey()
    for courant, vmax in ((None, 4500.0), (0.7, 4500.0), (None, 4000.0)):
        survey = Survey(courant_number=courant)
        expected = deepwave.discretisation.cfl_condition_n([10.0, 10.0], 0.001, vmax, courant_number=courant)[1]
        assert survey.step_ratio(vmax) == expected
    assert s.step_ratio(4500.0) == 2 and s.with_numerics("fast").step_ratio(4500.0) == 1


def test_round_trip_and_unknown_key():
    s = Survey(**{**TINY, "n_shots": None}, source_x=[10.0, 100.0], max_vel=5000.0)
    assert Survey.from_dict(s.to_dict()) == s
    with pytest.raises(ConfigError, match="did you mean 'spacing'"):
        Survey.from_dict({"spacnig": 5.0})
