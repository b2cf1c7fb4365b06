"""A restricted unpickler for third-party pickles (EmbodiedScan infos): it builds only plain containers, strings,
numbers, booleans, None and numpy arrays, scalars and dtypes. Any other global a pickle names (the way a crafted
pickle runs code) is refused with a one-line InputError naming the file. The allowed names are listed in
docs/untrusted-inputs.md."""

from __future__ import annotations

import _codecs
import pickle
from pathlib import Path

import numpy as np
from numpy._core import multiarray, numeric

from ross3d.errors import InputError


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it for bytes (always latin-1); other codecs are refused."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} is not allowed")
    return _codecs.encode(text, encoding)


# (module, name) as pickles write them -> the object used. numpy 1.x wrote `numpy.core.*`, numpy 2 `numpy._core.*`.
ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): multiarray._reconstruct for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): multiarray.scalar for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): numeric._frombuffer for core in ("core", "_core")},
    ("_codecs", "encode"): _latin1_encode,
}


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only plain data and numpy arrays "
                                         "are allowed)") from None


def load_restricted(path: str | Path) -> object:
    """Unpickle `path` allowing only the data types above; every failure is an InputError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _Restricted(f).load()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, MemoryError) as err:
        raise InputError(path, f"not a readable pickle ({err})") from None
