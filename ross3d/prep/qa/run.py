"""`prep_qa`: every given benchmark folder -> samples.parquet rows (and proposals.parquet), with a report of
row counts, skipped split files and bad records. Nothing is written when a record was bad, unless keep_going.
The file's `vision_only` rows (`prep vision-only`) are kept, but those of scenes the new samples hold out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ross3d.errors import ConfigError, InputError
from ross3d.prep.qa import multi3drefer, scanqa, scanrefer, sqa3d
from ross3d.prep.qa.labels import read_label_map
from ross3d.prep.qa.native import find_file, load_list
from ross3d.prep.qa.proposals import load_proposals, write_proposals
from ross3d.prep.qa.report import QaReport
from ross3d.prep.qa.scene_index import SceneIndex, load_scene_index
from ross3d.prep.qa.schema import VISION_ONLY, Sample, held_out_scenes, read_samples, write_samples
from ross3d.progress import NullProgress, Progress

log = logging.getLogger(__name__)

SAMPLES_FILE = "samples.parquet"
PROPOSALS_FILE = "proposals.parquet"


@dataclass
class QaSources:
    """Benchmark release folders as downloaded (or the folders that directly hold the split files)."""

    scanqa: Path | None = None
    sqa3d: Path | None = None
    scanrefer: Path | None = None
    multi3drefer: Path | None = None


def _split_files(root: Path, benchmark: str, splits: Iterable[str], names: Callable[[str], str | tuple[str, ...]],
                 subdirs: Iterable[str], report: QaReport) -> dict[str, tuple[Path, ...]]:
    """split -> its file(s); an absent split is a note, a folder with no split at all an error."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, f"{benchmark} folder not found")
    wanted_of = {split: (names(split),) if isinstance(names(split), str) else names(split) for split in splits}
    found = {}
    for split, wanted in wanted_of.items():
        paths = tuple(find_file(root, name, subdirs) for name in wanted)
        if all(p is not None for p in paths):
            found[split] = paths
        else:
            note = f"{benchmark} {split}: {', '.join(wanted)} not found in {root}; split skipped"
            log.debug(note)
            report.notes.append(note)
    if not found:
        expected = ", ".join(name for wanted in wanted_of.values() for name in wanted)
        raise InputError(root, f"no {benchmark} files (expected {expected})")
    return found


def _convert_simple(module, root: Path, benchmark: str, scenes: SceneIndex, report: QaReport,
                    progress: Progress) -> list[Sample]:
    out = []
    for split, (path,) in _split_files(root, benchmark, module.SPLITS, module.file_name, (), report).items():
        out += module.convert(load_list(path), split, path.name, scenes, report)
        progress.advance("qa")
    return out


def _convert_sqa3d(root: Path, scenes: SceneIndex, report: QaReport, progress: Progress) -> list[Sample]:
    out = []
    for split, (qpath, apath) in _split_files(root, "SQA3D", sqa3d.SPLITS, sqa3d.file_names, sqa3d.SUBDIRS,
                                              report).items():
        out += sqa3d.convert(load_list(qpath, "questions"), load_list(apath, "annotations"), split,
                             (qpath.name, apath.name), scenes, report)
        progress.advance("qa")
    return out


def _convert_scanrefer(root: Path, label_map: dict[str, int], scenes: SceneIndex,
                       proposals: dict[str, np.ndarray] | None, report: QaReport,
                       progress: Progress) -> list[Sample]:
    out = []
    for split, (path,) in _split_files(root, "ScanRefer", scanrefer.SPLITS, scanrefer.file_name, (),
                                       report).items():
        refs = scanrefer.parse(load_list(path), path.name, scenes, label_map, report)
        out += scanrefer.scanrefer_samples(refs, split)
        out += scanrefer.scan2cap_samples(refs, split, proposals if split != "train" else None, report)
        progress.advance("qa")
    return out


def _kept_vision_only(path: Path, samples: list[Sample], report: QaReport) -> list[Sample]:
    """The `prep vision-only` rows of the samples.parquet being replaced (docs/vision-only.md), counted in the
    report; those of scenes the new samples hold out are dropped with a note."""
    if not path.is_file():
        return []
    rows = [r for r in read_samples(path) if r.task == VISION_ONLY]
    held_out = held_out_scenes(samples)
    dropped = [r.scene_id for r in rows if r.scene_id in held_out]
    if dropped:
        report.notes.append(f"{len(dropped)} vision-only rows dropped, their scenes are held out now: "
                            f"{', '.join(dropped[:5])}")
    kept = [r for r in rows if r.scene_id not in held_out]
    for r in kept:
        report.rows[(r.task, r.split)] += 1
    return kept


def prep_qa(prep_dir: str | Path, sources: QaSources, label_map: str | Path | None = None,
            proposals: str | Path | None = None, scans_dir: str | Path | None = None, keep_going: bool = False,
            progress: Progress | None = None) -> QaReport:
    """Convert the given benchmarks into PREP_DIR/samples.parquet (and proposals into proposals.parquet).

    With bad records and keep_going False, nothing is written (report.samples_path stays None).
    """
    prep_dir = Path(prep_dir)
    progress = progress or NullProgress()
    if all(getattr(sources, name) is None for name in ("scanqa", "sqa3d", "scanrefer", "multi3drefer")):
        raise ConfigError("no benchmark given (--scanqa, --sqa3d, --scanrefer, --multi3drefer)")
    if sources.scanrefer is not None and label_map is None:
        raise ConfigError("--label-map: ScanRefer needs scannetv2-labels.combined.tsv for unique/multiple")
    scenes = load_scene_index(prep_dir)
    boxes = load_proposals(proposals, prep_dir, scans_dir) if proposals is not None else None
    report = QaReport()
    samples: list[Sample] = []
    progress.start("qa", None, "converting benchmark files", unit="files")
    if sources.scanqa is not None:
        samples += _convert_simple(scanqa, sources.scanqa, "ScanQA", scenes, report, progress)
    if sources.sqa3d is not None:
        samples += _convert_sqa3d(sources.sqa3d, scenes, report, progress)
    if sources.scanrefer is not None:
        samples += _convert_scanrefer(sources.scanrefer, read_label_map(label_map), scenes, boxes, report,
                                      progress)
    if sources.multi3drefer is not None:
        samples += _convert_simple(multi3drefer, sources.multi3drefer, "Multi3DRefer", scenes, report, progress)
    progress.finish("qa")
    for s in samples:
        report.rows[(s.task, s.split)] += 1
    if report.n_problems and not keep_going:
        log.error("%d bad records; nothing written (use --keep-going to write the other rows)", report.n_problems)
        return report
    kept = _kept_vision_only(prep_dir / SAMPLES_FILE, samples, report)
    write_samples(prep_dir / SAMPLES_FILE, samples + kept)
    report.samples_path = str(prep_dir / SAMPLES_FILE)
    if boxes is not None:
        write_proposals(prep_dir / PROPOSALS_FILE, boxes)
        report.proposals_path = str(prep_dir / PROPOSALS_FILE)
    return report
