"""`ross3d prep scannet`: raw ScanNet scans (or the posed_images export, or posed RGB-D folders) -> PREP_DIR
(logic in ross3d.prep.run)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ross3d_cli.choices import Executor
from ross3d_cli.prep import prep_app


def scannet(
    scans_dir: Path = typer.Argument(..., help="ScanNet scans folder (one sub-folder per scene)."),
    prep_dir: Path = typer.Argument(..., help="Output PREP_DIR."),
    scenes: Optional[str] = typer.Option(None, "--scenes", help="Comma-separated scene ids (default: all)."),
    scene_list: Optional[Path] = typer.Option(None, "--scene-list", help="File with one scene id per line."),
    frame_stride: int = typer.Option(10, "--frame-stride", help="Keep every N-th frame of the .sens stream."),
    num_frames: int = typer.Option(32, "--num-frames", help="Frames selected per strategy."),
    bev_size: int = typer.Option(432, "--bev-size",
                                 help="BEV side in pixels (the original's 432); any multiple of 16 trains with "
                                      "FLUX's VAE (docs/trust.md)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the max-coverage tie-break."),
    exclude_zero_depth: bool = typer.Option(False, "--exclude-zero-depth", help="Drop zero-depth pixels from "
                                            "coverage, token coordinates and object membership (the original "
                                            "counts them as points at the camera centre)."),
    max_coverage_order: str = typer.Option("frame", "--max-coverage-order", help="Order of the max-coverage "
                                           "frames fed to the model: frame (by frame number, as the original's "
                                           "loader) or greedy (pick order)."),
    fuse_mesh: bool = typer.Option(False, "--fuse-mesh", help="A scene without a mesh gets one fused from its kept "
                                   "RGB-D frames (TSDF), for max-coverage and the BEV."),
    fuse_voxel_size: float = typer.Option(0.04, "--fuse-voxel-size", help="TSDF voxel size in metres."),
    fuse_trunc: float = typer.Option(0.12, "--fuse-trunc", help="TSDF truncation distance in metres."),
    workers: int = typer.Option(1, "--workers", help="Processes of the local pool."),
    executor: Executor = typer.Option(Executor.local, "--executor", help="local process pool or a Ray cluster."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address (default: local)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip scenes committed with the same options."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Exit 0 even when some scenes failed."),
    source: str = typer.Option("sens", "--source", help="Frames from the raw .sens (sens), the posed_images "
                               "export (posed-images) or the generic posed RGB-D layout (posed-rgbd)."),
    posed_images: Optional[Path] = typer.Option(None, "--posed-images",
                                                help="posed_images folder (<scene>/<idx5>.jpg)."),
    rgbd: Optional[Path] = typer.Option(None, "--rgbd", help="Generic posed RGB-D folder (<scene>/color/<n>.jpg, "
                                        "depth/<n>.png, pose/<n>.txt, intrinsic_depth.txt; docs/posed-rgbd.md)."),
    depth_scale: float = typer.Option(1000.0, "--depth-scale", help="Depth PNG values per metre of the posed-rgbd "
                                      "source (1000: millimetres)."),
    embodiedscan_infos: Optional[list[Path]] = typer.Option(None, "--embodiedscan-infos", help="EmbodiedScan info "
                                                            "pkl (repeatable): frame lists, axis_align_matrix."),
    bev_images: Optional[Path] = typer.Option(None, "--bev-images", help="Folder of released <scene>/view_0.jpg BEV "
                                              "images, used instead of rendering."),
    selection_file: Optional[Path] = typer.Option(None, "--selection-file", help="The original's "
                                                  "scannet_select_frames.json: max-coverage takes its frames."),
    boxes_file: Optional[Path] = typer.Option(None, "--boxes-file", help="scannet_{split}_gt_box.json: object boxes "
                                              "where segments and aggregation are absent."),
) -> None:
    """Frames, selections (uniform, max-coverage), geometry, objects and BEV of ScanNet scans."""
    from ross3d.prep.options import PrepOptions
    from ross3d.prep.run import prep_scannet
    from ross3d.prep.sources import SourceOptions
    from ross3d_cli.console import RichProgress, console, user_errors
    from ross3d_cli.scene_options import scene_ids

    with user_errors():
        ids = scene_ids(scenes, scene_list)
        sources = SourceOptions(source, _text(posed_images), tuple(map(str, embodiedscan_infos or ())),
                                _text(bev_images), _text(selection_file), _text(boxes_file), _text(rgbd),
                                depth_scale)
        options = PrepOptions(frame_stride=frame_stride, num_frames=num_frames, bev_size=bev_size, seed=seed,
                              exclude_zero_depth=exclude_zero_depth, max_coverage_order=max_coverage_order,
                              fuse_mesh=fuse_mesh, fuse_voxel_size=fuse_voxel_size, fuse_trunc=fuse_trunc,
                              sources=sources)
        with RichProgress() as progress:
            report = prep_scannet(scans_dir, prep_dir, options, scenes=ids, workers=workers, executor=executor.value,
                                  ray_address=ray_address, resume=resume, progress=progress)
    console.print(f"{len(report.ok)} scenes prepared, {len(report.skipped)} skipped (already done), "
                  f"{len(report.failed)} failed; {report.frames:,} frames in {report.seconds:.1f} s", highlight=False)
    for scene_id, warnings in sorted(report.warnings.items()):
        for warning in warnings:
            console.print(f"[yellow]warning:[/] {scene_id}: {warning}", highlight=False)
    _print_agreement(report.agreement, console)
    for scene_id, error in sorted(report.failed.items()):
        console.print(f"[red]failed:[/] {scene_id}: {error}", highlight=False)
    if report.failed and not keep_going:
        raise typer.Exit(1)


def _text(path: Optional[Path]) -> Optional[str]:
    return None if path is None else str(path)


def _print_agreement(agreement: dict[str, dict], console) -> None:
    """Per scene and overall: frames shared by our max-coverage and the selection file, voxels each covers."""
    if not agreement:
        return
    total = {"shared_frames": 0, "num_frames": 0, "covered_voxels_ours": 0, "covered_voxels_theirs": 0}
    for scene_id, a in sorted(agreement.items()):
        total = {k: total[k] + a[k] for k in total}
        console.print(f"selection file vs ours: {scene_id}: {a['shared_frames']}/{a['num_frames']} frames shared, "
                      f"covered voxels ours {a['covered_voxels_ours']} theirs {a['covered_voxels_theirs']}",
                      highlight=False)
    console.print(f"selection file vs ours, overall: {total['shared_frames']}/{total['num_frames']} frames shared, "
                  f"covered voxels ours {total['covered_voxels_ours']} theirs {total['covered_voxels_theirs']}",
                  highlight=False)


def register(app: typer.Typer) -> None:
    prep_app.command("scannet")(scannet)
