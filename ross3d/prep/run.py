"""`prep_scannet`: lock PREP_DIR (one run at a time, ross3d.locking), pick the scenes, skip those committed with
the same options fingerprint and unchanged input files (ross3d.prep.input_fingerprint), run the rest through an
executor, then write the merged tables and, last, manifest.json."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ross3d import __version__
from ross3d.errors import InputError
from ross3d.locking import exclusive_lock
from ross3d.prep.input_fingerprint import input_fingerprint
from ross3d.prep.options import FORMAT_VERSION, PrepOptions
from ross3d.prep.scene_job import SceneResult
from ross3d.prep.executors import check_executor, run_scenes
from ross3d.prep.store import (
    OBJECTS_SCHEMA, SCENES_SCHEMA, SELECTIONS_SCHEMA, clean_stale, read_committed, write_json_atomic,
    write_table_atomic,
)
from ross3d.progress import NullProgress, Progress
from ross3d.safe_names import RULE, check_scene_id, is_safe_name

log = logging.getLogger(__name__)


@dataclass
class PrepReport:
    """What a run did: scenes processed ok, skipped (already committed), failed (with errors)."""

    ok: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    frames: int = 0
    warnings: dict[str, list[str]] = field(default_factory=dict)  # outputs missing per scene
    agreement: dict[str, dict] = field(default_factory=dict)  # --selection-file vs our max-coverage per scene


def list_scenes(scans_dir: Path, scenes: list[str] | None) -> list[str]:
    """The requested scenes (each a safe name, ross3d.safe_names), or every sub-folder of SCANS_DIR (the
    posed_images or posed RGB-D folder with those sources) whose name is one, sorted; other folders are skipped
    with a warning."""
    if not scans_dir.is_dir():
        raise InputError(scans_dir, "scans folder not found")
    if scenes:
        return list(dict.fromkeys(check_scene_id(s, "--scenes") for s in scenes))
    found = []
    for p in sorted(scans_dir.iterdir()):
        if p.is_dir() and not p.name.startswith("."):
            if is_safe_name(p.name):
                found.append(p.name)
            else:
                log.warning("%s: skipped, the folder name is not a safe scene id (%s)", p, RULE)
    if not found:
        raise InputError(scans_dir, "no scene folders")
    return found


def read_scene_list(path: Path) -> list[str]:
    """The scene ids of a `--scene-list` file, one per line (blank lines skipped), each a safe name."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read scene list: {getattr(err, 'strerror', None) or err}") from None
    return [check_scene_id(line.strip(), f"{path}: line {k}") for k, line in enumerate(lines, 1) if line.strip()]


def _committed(prep_dir: Path, fingerprint: str) -> dict[str, SceneResult]:
    scenes_dir = prep_dir / "scenes"
    out = {}
    if scenes_dir.is_dir():
        for d in sorted(scenes_dir.iterdir()):
            record = read_committed(d) if not d.name.startswith(".") else None
            if record and record.get("fingerprint") == fingerprint and record.get("status") == "ok":
                out[d.name] = SceneResult.from_record(record)
    return out


def _write_outputs(prep_dir: Path, scans_dir: Path, options: PrepOptions, results: dict[str, SceneResult]) -> None:
    ordered = [results[s] for s in sorted(results)]
    write_table_atomic(prep_dir / "scenes.parquet", [r.scene_row for r in ordered], SCENES_SCHEMA)
    write_table_atomic(prep_dir / "selections.parquet", [x for r in ordered for x in r.selection_rows],
                       SELECTIONS_SCHEMA)
    write_table_atomic(prep_dir / "objects.parquet", [x for r in ordered for x in r.object_rows], OBJECTS_SCHEMA)
    write_json_atomic(prep_dir / "manifest.json", {
        "format_version": FORMAT_VERSION, "ross3d_version": __version__, "scans_dir": str(scans_dir.resolve()),
        "options": options.to_dict(), "inputs": options.sources.to_dict(),
        "options_fingerprint": options.fingerprint(),
        "scenes": {r.scene_id: {"status": r.status, "error": r.error, "timings": r.timings,
                                "mesh_source": r.mesh_source, "bev_source": r.bev_source, "warnings": r.warnings,
                                "selection_agreement": r.selection_agreement,
                                "inputs_fingerprint": r.inputs_fingerprint} for r in ordered},
    })


def prep_scannet(scans_dir: str | Path, prep_dir: str | Path, options: PrepOptions, *,
                 scenes: list[str] | None = None, workers: int = 1, executor: str = "local",
                 ray_address: str | None = None, resume: bool = True, progress: Progress | None = None
                 ) -> PrepReport:
    """Run stage 1 over SCANS_DIR into PREP_DIR; failed scenes are reported, not raised."""
    scans_dir, prep_dir = Path(scans_dir), Path(prep_dir)
    progress = progress or NullProgress()
    options.sources.check_paths()
    frames_dir = options.sources.frames_dir
    scene_ids = list_scenes(Path(frames_dir) if frames_dir else scans_dir, scenes)
    check_executor(executor)
    with exclusive_lock(prep_dir, "prep scannet"):
        return _prep_locked(scans_dir, prep_dir, options, scene_ids, workers, executor, ray_address, resume,
                            progress)


def _prep_locked(scans_dir: Path, prep_dir: Path, options: PrepOptions, scene_ids: list[str], workers: int,
                 executor: str, ray_address: str | None, resume: bool, progress: Progress) -> PrepReport:
    start = time.perf_counter()
    (prep_dir / "scenes").mkdir(parents=True, exist_ok=True)
    (prep_dir / "manifest.json").unlink(missing_ok=True)
    clean_stale(prep_dir / "scenes")
    clean_stale(prep_dir / "previews")
    clean_stale(prep_dir)
    fingerprint = options.fingerprint()
    results = _committed(prep_dir, fingerprint)
    report = PrepReport(skipped=[s for s in scene_ids if resume and s in results and
                                 results[s].inputs_fingerprint == input_fingerprint(scans_dir, s, options.sources)])
    todo = [s for s in scene_ids if s not in report.skipped]
    progress.start("scenes", len(scene_ids), "scenes", unit="scenes")
    progress.start("frames", None, "frames", unit="frames")
    progress.advance("scenes", len(report.skipped))
    for result in run_scenes(executor, scans_dir, prep_dir, todo, options, workers, ray_address):
        results[result.scene_id] = result
        if result.status == "ok":
            report.ok.append(result.scene_id)
            report.frames += result.n_frames_total
        else:
            report.failed[result.scene_id] = result.error or "unknown error"
        progress.advance("scenes")
        progress.advance("frames", result.n_frames_total)
    progress.finish("scenes")
    progress.finish("frames")
    for scene_id in scene_ids:
        result = results.get(scene_id)
        if result is not None and result.status == "ok":
            if result.warnings:
                report.warnings[scene_id] = result.warnings
            if result.selection_agreement:
                report.agreement[scene_id] = result.selection_agreement
    _write_outputs(prep_dir, scans_dir, options, results)
    report.seconds = time.perf_counter() - start
    return report
