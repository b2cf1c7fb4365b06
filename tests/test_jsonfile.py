"""read_json: the parsed value, or one line naming the file and what is wrong."""

from __future__ import annotations

import pytest

from ross3d.errors import InputError
from ross3d.jsonfile import read_json


def test_read_json_values_and_one_line_errors(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"zero_optimization": {"stage": 3}, "x": [1, 2.5]}')
    assert read_json(good) == {"zero_optimization": {"stage": 3}, "x": [1, 2.5]}
    with pytest.raises(InputError, match=r"nope.json: missing \(train option deepspeed_config\)$"):
        read_json(tmp_path / "nope.json", "train option deepspeed_config")
    with pytest.raises(InputError, match=r"nope.json: missing$"):
        read_json(tmp_path / "nope.json")
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(InputError, match=r"latin.json: not UTF-8 text \(byte 7\)$"):
        read_json(latin)
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": ')
    with pytest.raises(InputError, match=r"broken.json: not valid JSON \(Expecting value: line 1 column 7"):
        read_json(broken)
