"""The restricted unpickler of third-party pickles (EmbodiedScan infos): plain data and numpy load, at every
pickle protocol and as numpy 1.x wrote them; a pickle that would call anything else runs nothing and fails with one
line naming the file."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from ross3d.errors import InputError
from ross3d.safe_pickle import load_restricted
from ross3d.scannet.posed_images import load_embodiedscan_infos

DATA = {"metainfo": {"categories": {"chair": 1}}, "data_list": [
    {"sample_idx": "scannet/scene0001_00", "axis_align_matrix": np.arange(16.0).reshape(4, 4),
     "depth_cam2img": np.diag([5.0, 5.0, 1.0]).T, "n": np.int64(7), "f": np.float32(0.5), "ok": np.bool_(True),
     "rec": np.zeros(2, dtype=[("a", "<f4"), ("b", "u1")]), "t": (1, 2.5, None, "x", True),
     "images": [{"img_path": "scannet/posed_images/scene0001_00/00020.jpg"}]}]}


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (np.ndarray, np.generic)):
        return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_and_numpy_load_at_every_protocol(tmp_path, protocol):
    path = tmp_path / "infos.pkl"
    path.write_bytes(pickle.dumps(DATA, protocol=protocol))
    assert _same(load_restricted(path), DATA)


def test_numpy1_pickles_load(tmp_path):
    """numpy 1.x (which wrote the released infos) named `numpy.core.multiarray`; protocol 2 spells it in text."""
    raw = pickle.dumps(DATA, protocol=2)
    assert raw.count(b"numpy._core.multiarray") == 2  # _reconstruct and scalar (each global is written once)
    path = tmp_path / "infos.pkl"
    path.write_bytes(raw.replace(b"numpy._core.", b"numpy.core."))
    assert _same(load_restricted(path), DATA)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_crafted_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "embodiedscan_infos_train.pkl"
    path.write_bytes(pickle.dumps({"data_list": [{"sample_idx": _Payload(marker)}]}))
    with pytest.raises(InputError) as err:
        load_embodiedscan_infos([path])
    assert str(err.value) == (f"{path}: not a readable pickle (refusing to load posix.system (only plain data "
                              "and numpy arrays are allowed))")
    assert not marker.exists()


def test_codecs_other_than_latin1_refused(tmp_path):
    """protocol 2 spells bytes as `_codecs.encode(text, "latin1")`; any other codec is refused."""
    path = tmp_path / "infos.pkl"
    path.write_bytes(pickle.dumps(b"\xff", protocol=2).replace(b"latin1", b"utf_16"))
    with pytest.raises(InputError, match=r"infos.pkl: not a readable pickle \(_codecs.encode with codec 'utf_16'"):
        load_restricted(path)
