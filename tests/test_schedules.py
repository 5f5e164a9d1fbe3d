"""The schedule helper every curriculum shares (`fwi_lightning.callbacks.schedules`)."""

from __future__ import annotations

import math

import pytest

from fwi_lightning.callbacks.schedules import Schedule
from fwi_lightning.errors import ConfigError


def test_step_schedule_holds_each_stage_from_its_position_on():
    schedule = Schedule.from_spec({"kind": "step", "stages": [[2, 5.0], [4, 10.0], [7, 20.0]]})
    assert [schedule.value(t) for t in range(9)] == [5.0, 5.0, 5.0, 5.0, 10.0, 10.0, 10.0, 20.0, 20.0]


def test_linear_and_cosine_ramps_with_warmup():
    linear = Schedule.from_spec({"kind": "linear", "start": 4.0, "end": 12.0, "length": 4, "warmup": 2})
    assert [linear.value(t) for t in range(8)] == [4.0, 4.0, 4.0, 6.0, 8.0, 10.0, 12.0, 12.0]
    cosine = Schedule.from_spec({"kind": "cosine", "start": 0.0, "end": 1.0, "length": 4, "by": "step"})
    expected = [(1 - math.cos(math.pi * min(t / 4, 1))) / 2 for t in range(6)]
    assert [cosine.value(t) for t in range(6)] == pytest.approx(expected)
    assert cosine.by == "step" and cosine.value(2) == pytest.approx(0.5)


def test_lists_and_mappings_interpolate_entry_by_entry():
    weights = Schedule.from_spec({"kind": "linear", "start": {"a": 1.0, "b": 0.0}, "end": {"a": 0.0, "b": 1.0}, "length": 4})
    assert weights.value(1) == pytest.approx({"a": 0.75, "b": 0.25})
    band = Schedule.from_spec({"kind": "linear", "start": [2.0, 10.0], "end": [2.0, 30.0], "length": 2})
    assert band.value(1) == pytest.approx([2.0, 20.0])


@pytest.mark.parametrize("spec, key", [
    ({"kind": "step", "stages": [[0, 5.0], [4, 10.0], [4, 20.0]]}, "schedule.stages.2"),
    ({"kind": "step", "stages": [[3, 5.0], [1, 10.0]]}, "schedule.stages.1"),
    ({"kind": "linear", "start": 1.0, "end": 2.0, "length": 0}, "schedule.length"),
    ({"kind": "linear", "start": [1.0], "end": [1.0, 2.0]}, "schedule.end"),
    ({"kind": "sigmoid"}, "schedule.kind"),
    ({"kind": "step", "stages": [[0, 1.0]], "by": "batch"}, "schedule.by"),
    ({"kind": "linear", "start": 1.0, "end": 2.0, "stages": []}, "schedule.stages"),
])
def test_bad_schedules_are_one_line_naming_the_entry(spec, key):
    with pytest.raises(ConfigError) as info:
        Schedule.from_spec(spec)
    assert info.value.key == key and "\n" not in str(info.value)
