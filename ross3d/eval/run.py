"""`ross3d eval run` as a library call: load the checkpoint on this rank's device (cuda:LOCAL_RANK under torchrun,
with an NCCL or gloo process group), answer the benchmarks over all ranks with resume (ross3d.eval.shards), then on
rank 0 score every answer file against samples.parquet and its trivial baseline, writing METRICS.json/.csv and
BASELINE.json beside answers.jsonl."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from ross3d.errors import ConfigError
from ross3d.eval.runner import EvalOptions
from ross3d.eval.scoring import BENCHMARKS
from ross3d.eval.shards import Progressed
from ross3d.progress import NullProgress, Progress


@dataclass
class EvalResult:
    """Rank 0's outcome: metrics and baselines per benchmark, what was resumed, and the answering time of this
    run over all ranks (samples answered now / seconds is the throughput)."""

    metrics: dict[str, dict]
    baselines: dict[str, dict]
    progress: dict[str, Progressed]
    seconds: float

    @property
    def samples_per_s(self) -> float:
        answered = sum(p.answered for p in self.progress.values())
        return answered / self.seconds if self.seconds else 0.0


def run_settings(checkpoint: str | Path, options: EvalOptions) -> dict:
    """What the answers depend on, recorded beside them so that a resume with other settings is refused: the
    checkpoint (its path, and size and modification time of each file, so a model retrained in place counts as
    another) and every option but the device."""
    checkpoint = Path(checkpoint).resolve()
    files = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(checkpoint.iterdir()) if p.is_file()}
    settings = {k: v for k, v in dataclasses.asdict(options).items() if k != "device"}
    return {"checkpoint": str(checkpoint), "checkpoint_files": files, **settings}


def evaluate(checkpoint: str | Path, cache: str | Path, samples: str | Path, out: str | Path,
             benchmarks: list[str], options: EvalOptions, restart: bool = False,
             scan2cap_unmatched: str = "original", baseline: bool = True,
             progress: Progress = NullProgress()) -> EvalResult | None:
    """Answer and score the benchmarks; every rank calls this, rank 0 returns the result (others None)."""
    from ross3d.cache.distributed import rank, session
    from ross3d.eval.baselines import baseline_metrics
    from ross3d.eval.runner import Evaluator
    from ross3d.eval.scoring import references_from_samples, score, write_metrics
    from ross3d.eval.shards import answer_benchmarks

    unknown = [b for b in benchmarks if b not in BENCHMARKS]
    if unknown or not benchmarks:
        raise ConfigError(f"--benchmark: {unknown or 'none given'} not among {list(BENCHMARKS)}")
    samples, out = Path(samples), Path(out)
    with session(options.device) as device:
        options.device = str(device)
        evaluator = Evaluator(checkpoint, cache, samples.parent, options)
        start = time.perf_counter()
        answers, counts = answer_benchmarks(evaluator, benchmarks, out, run_settings(checkpoint, options), restart,
                                            progress)
        seconds = time.perf_counter() - start
    if rank() != 0:
        return None
    metrics, baselines = {}, {}
    for bench in benchmarks:
        metrics[bench] = score(bench, answers[bench], references_from_samples(samples, bench, options.split),
                               scan2cap_unmatched)
        write_metrics(metrics[bench], out / bench / "METRICS.json")
        if baseline:
            baselines[bench] = baseline_metrics(samples.parent, bench, limit=options.limit)
            write_metrics(baselines[bench], out / bench / "BASELINE.json")
    return EvalResult(metrics, baselines, counts, seconds)
