"""open3d's compiled module without the `open3d` package's `__init__`.

`import open3d` (and so `import open3d.t.geometry`: the package is initialised first) also imports
`open3d.visualization`, which pulls in dash and plotly: most of the import time of a prep worker, for nothing
prep uses. Ray casting (`t.geometry.RaycastingScene`, `core.Tensor`) and mesh reading (`io`) live in the compiled
`open3d.pybind` module, which is loaded here on its own and registered under its usual name, so a later
`import open3d` in the same process reuses it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_NAME = "open3d.pybind"


def open3d_core() -> ModuleType:
    """`open3d.pybind` (sub-modules core, t, io, geometry, ...), loaded once per process."""
    for name in (_NAME, "open3d"):
        if name in sys.modules:
            return sys.modules[name]
    package = importlib.util.find_spec("open3d")  # locates the package without running its __init__
    if package is None or package.origin is None:
        raise ImportError("open3d is not installed")
    binary = next(Path(package.origin).parent.glob("pybind.*"), None)
    if binary is None:
        import open3d  # a layout without the compiled module beside __init__: the full import

        return open3d
    spec = importlib.util.spec_from_file_location(_NAME, binary)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_NAME]
        raise
    return module
