"""ross3d: data preparation, latent caching and training for Ross3D (reconstructive 3D-aware instruction tuning).

Importing it registers the Ross3D config and model with transformers' Auto classes (ross3d.auto_classes), so that
`AutoConfig.from_pretrained(DIR)` and `AutoModel.from_pretrained(DIR)` load a ross3d model folder.
"""

from ross3d import auto_classes

__version__ = "0.1.0"

auto_classes.install()
