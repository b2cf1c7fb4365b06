"""`ross3d synth`: synthetic ScanNet-format scans and benchmark annotations (the embedded default data)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

synth_app = typer.Typer(help="Synthetic ScanNet-format data for the demo, tests and benchmarks.", no_args_is_help=True)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not WIDTHxHEIGHT") from None
    return w, h


@synth_app.command("scannet")
def synth_scannet(
    out_dir: Path = typer.Argument(..., help="Writes OUT_DIR/scans/<scene>/, OUT_DIR/benchmarks/, OUT_DIR/scannet_metadata/."),
    scenes: int = typer.Option(3, help="Number of scenes."),
    frames: int = typer.Option(340, help="Frames per .sens stream."),
    seed: int = typer.Option(0, help="Everything is a deterministic function of the seed."),
    color_size: str = typer.Option("320x240", help="Colour frame size WxH (real ScanNet: 1296x968)."),
    depth_size: str = typer.Option("160x120", help="Depth frame size WxH (real ScanNet: 640x480)."),
    export: str = typer.Option("", "--export", help="posed-images: also write OUT_DIR/posed_images, "
                               "embodiedscan/, bev/<scene>/view_0.jpg and metadata/ as the original's data; "
                               "posed-rgbd: also write OUT_DIR/rgbd/ in the generic posed RGB-D layout."),
) -> None:
    """Rooms with furniture as real ScanNet scans (.sens, mesh, alignment, aggregation) plus ScanQA, SQA3D,
    ScanRefer and Multi3DRefer annotations generated from the scenes."""
    from ross3d.synth.scenes import generate_synthetic_dataset
    from ross3d_cli.console import RichProgress, console, user_errors

    if export not in ("", "posed-images", "posed-rgbd"):
        raise typer.BadParameter(f"--export must be posed-images or posed-rgbd, got {export!r}")
    with user_errors(), RichProgress() as progress:
        ids = generate_synthetic_dataset(out_dir, scenes, frames, seed, _size(color_size), _size(depth_size), progress)
    if ids is None:
        console.print(f"{out_dir}: already generated with these settings")
    else:
        console.print(f"wrote {len(ids)} scenes to {out_dir / 'scans'} and annotations to {out_dir / 'benchmarks'}")
    if export == "posed-rgbd":
        from ross3d.synth.rgbd_export import export_posed_rgbd

        with user_errors(), RichProgress() as progress:
            exported = export_posed_rgbd(out_dir / "scans", out_dir, progress=progress)
        console.print(f"exported {len(exported)} scenes in the posed RGB-D layout: {out_dir / 'rgbd'}")
    if export == "posed-images":
        from ross3d.synth.description import describe_synth
        from ross3d.synth.posed_export import export_posed_images, scannet_splits
        from ross3d.synth.scenes import make_scenes

        with user_errors(), RichProgress() as progress:
            described = [describe_synth(scene) for scene in make_scenes(scenes, seed)]
            exported = export_posed_images(out_dir / "scans", out_dir, described, seed=seed,
                                           splits=scannet_splits(out_dir / "scannet_metadata"), progress=progress)
        console.print(f"exported {len(exported)} scenes as the original's data: {out_dir / 'posed_images'}, "
                      f"{out_dir / 'embodiedscan'}, {out_dir / 'bev'}, {out_dir / 'metadata'}")


@synth_app.command("encoders")
def synth_encoders(
    out_dir: Path = typer.Argument(..., help="Writes OUT_DIR/tiny-vae and OUT_DIR/tiny-siglip."),
    seed: int = typer.Option(0, help="Seed of the random weights."),
    fit: Path = typer.Option(None, "--fit", help="PREP_DIR: fit the VAE to its frames and BEVs (a short "
                             "training loop; OUT_DIR/tiny-vae/fit.json reports it) instead of random weights."),
    fit_steps: int = typer.Option(None, help="Training steps of --fit (default: FitOptions.steps)."),
) -> None:
    """Tiny FLUX-shaped VAE and tiny SigLIP vision tower for the demo and tests where the real FLUX.1-dev VAE and
    LLaVA-Video tower cannot be downloaded. The SigLIP weights are random; the VAE's too unless --fit trains it on
    the scenes' own frames. Each folder's README says which."""
    from ross3d.cache.fit_vae import FitOptions, save_fitted_tiny_vae
    from ross3d.cache.tiny import save_tiny_siglip, save_tiny_vae
    from ross3d_cli.console import RichProgress, console, user_errors

    vae, siglip = out_dir / "tiny-vae", out_dir / "tiny-siglip"
    if not (vae / "config.json").is_file():
        if fit is None:
            save_tiny_vae(vae, seed=seed)
        else:
            with user_errors(), RichProgress() as progress:
                steps = {} if fit_steps is None else {"steps": fit_steps}
                save_fitted_tiny_vae(fit, vae, FitOptions(seed=seed, **steps), progress)
    if not (siglip / "config.json").is_file():
        save_tiny_siglip(siglip, seed=seed)
    if (vae / "fit.json").is_file():
        _print_fit(json.loads((vae / "fit.json").read_text()))
    console.print(f"encoders: {vae} ({'fitted' if (vae / 'fit.json').is_file() else 'random'}), "
                  f"{siglip} (random)")


def _print_fit(fit: dict) -> None:
    from ross3d_cli.console import console

    console.print(f"VAE fitted in {fit['steps']} steps ({fit['seconds']:.0f} s): held-out round trip "
                  f"{fit['heldout_psnr_db']:.1f} dB PSNR over {fit['heldout_frames']} frames; posterior mean "
                  f"log-variance {fit['mean_logvar']:.2f} (std {fit['posterior_std']:.3f}) against a spread of the "
                  f"means (std) of {fit['mean_spread']:.3f}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(synth_app, name="synth")
