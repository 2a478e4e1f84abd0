"""Every JSON file cytofm writes is strict JSON: NaN and infinities as null (a bare NaN is refused by jq,
browsers and most languages' parsers)."""

import json
import math

import numpy as np
import pytest

from cytofm.utils.io import nan_from_null, strict_json, write_json


def strict_load(text: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_become_null(tmp_path):
    data = {"a": float("nan"), "b": [1.5, float("inf"), -float("inf")], "c": np.float32(np.nan),
            "d": np.array([0.25, np.nan]), "e": (np.int64(3), "x"), "f": {"g": None}}
    write_json(tmp_path / "x.json", data)
    assert strict_load((tmp_path / "x.json").read_text()) == {
        "a": None, "b": [1.5, None, None], "c": None, "d": [0.25, None], "e": [3, "x"], "f": {"g": None}}
    assert strict_load(strict_json({"k": math.nan}, indent=None)) == {"k": None}


def test_numbers_read_back_as_nan():
    back = nan_from_null({"value": None, "ci95": [None, 0.5]})
    assert math.isnan(back["value"]) and math.isnan(back["ci95"][0]) and back["ci95"][1] == 0.5


def test_the_strict_parser_refuses_a_bare_nan():
    with pytest.raises(ValueError, match="not JSON: NaN"):
        strict_load('{"a": NaN}')
