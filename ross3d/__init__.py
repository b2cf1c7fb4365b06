"""ross3d: data preparation, latent caching and training for Ross3D (reconstructive 3D-aware instruction tuning)."""

__version__ = "0.1.0"
