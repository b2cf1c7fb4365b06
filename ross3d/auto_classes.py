"""Registration of the Ross3D config and model with transformers' Auto classes, installed by `import ross3d`.

After `import ross3d`, `AutoConfig.from_pretrained(DIR)` returns a `Ross3DConfig` and `AutoModel.from_pretrained(DIR)`
a `Ross3D` for a ross3d model folder (`model_type: ross3d`). Importing transformers (and torch with it) takes
seconds that every `ross3d` command and every prep worker would pay, so `import ross3d` does not import it: an Auto
module already imported is registered with at once, one imported later right after it loads (a `sys.meta_path`
finder wraps its loader). docs/model.md, "Loading with transformers".
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable
from types import ModuleType

CONFIG_AUTO = "transformers.models.auto.configuration_auto"
MODEL_AUTO = "transformers.models.auto.modeling_auto"


def _register_config(module: ModuleType) -> None:
    from ross3d.model.config import Ross3DConfig

    module.AutoConfig.register(Ross3DConfig.model_type, Ross3DConfig, exist_ok=True)


def _register_model(module: ModuleType) -> None:
    from ross3d.model.config import Ross3DConfig
    from ross3d.model.ross3d import Ross3D

    module.AutoModel.register(Ross3DConfig, Ross3D, exist_ok=True)


HOOKS: dict[str, Callable[[ModuleType], None]] = {CONFIG_AUTO: _register_config, MODEL_AUTO: _register_model}


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader, then the module's registration."""

    def __init__(self, loader, hook: Callable[[ModuleType], None]):
        self.loader, self.hook = loader, hook

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        self.hook(module)


class _AutoFinder(importlib.abc.MetaPathFinder):
    """Finds the two Auto modules with the other finders and wraps their loaders."""

    def find_spec(self, name, path, target=None):
        if name not in HOOKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisteringLoader(spec.loader, HOOKS[name])
                return spec
        return None


def install() -> None:
    """Register with the Auto modules imported already, and with the others once they are imported."""
    for name, hook in HOOKS.items():
        if name in sys.modules:
            hook(sys.modules[name])
    if not any(isinstance(finder, _AutoFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AutoFinder())
