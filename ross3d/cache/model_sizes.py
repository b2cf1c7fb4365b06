"""What a cache fixes in a model config: `cache_sizes` reads frames per sample, SigLIP width and patch grid, BEV
latent grid and the VAE factors from a CACHE_DIR; `fit_to_cache` gives a model config the cache's data-choice sizes
(FOLLOW_CACHE) and refuses a weight shape that differs. Used by training, eval and visualize alike.
"""

from __future__ import annotations

from pathlib import Path

from ross3d.errors import ConfigError, InputError

# Ross3DConfig fields the cache fixes that are no weight shape: a model follows the cache in these
FOLLOW_CACHE = ("n_frames", "patch_grid", "latent_shift", "latent_scale")


def cache_sizes(cache_dir: str | Path, strategy: str) -> dict:
    """Model config fields fixed by the cache: frames per sample, SigLIP width, BEV latent grid, VAE factors."""
    from ross3d.cache.reader import CacheReader

    reader = CacheReader(cache_dir)
    if not reader.has_vision:
        raise InputError(Path(cache_dir) / "manifest.json", "cache has no vision features (run cache-latents "
                                                           "with --vision-tower)")
    scenes = reader.scenes(strategy)
    if not scenes:
        raise InputError(Path(cache_dir) / "index.parquet", f"no scene cached with strategy {strategy!r}")
    arrays = reader.load_scene(scenes[0], strategy)
    n_frames, n_patches, width = arrays["frames/vision"].shape
    channels, _, bev_grid = arrays["bev/vae_mean"].shape
    mask = arrays["bev/valid27"].shape[0]
    if bev_grid != 2 * mask:  # 432 px -> 54x54 latent -> the 27x27 grid of valid27; caches made before the mask
        # followed the BEV size hold a 27x27 mask for every size
        raise InputError(Path(cache_dir) / "cache.zarr" / scenes[0], f"BEV latent {bev_grid}x{bev_grid} does not "
                         f"group to the {mask}x{mask} BEV mask (a cache written before the mask followed the BEV "
                         f"size): rebuild it (cache-latents --rebuild)")
    return {"n_frames": int(n_frames), "patch_grid": int(round(n_patches ** 0.5)), "vision_dim": int(width),
            "bev_latent_grid": int(bev_grid), "latent_channels": int(channels),
            "latent_shift": reader.shift_factor, "latent_scale": reader.scaling_factor}


def fit_to_cache(model_config, sizes: dict, source: str):
    """`model_config` with the cache's data-choice sizes (FOLLOW_CACHE); a weight shape that differs is an error."""
    wrong = {k: (getattr(model_config, k), v) for k, v in sizes.items()
             if k not in FOLLOW_CACHE and getattr(model_config, k) != v}
    if wrong:
        raise ConfigError(f"{source} does not fit the cache (model, cache): {wrong}")
    return model_config.replace(**{k: sizes[k] for k in FOLLOW_CACHE})
