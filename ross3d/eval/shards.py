"""Sharded, resumable answering for `ross3d eval run`.

Every rank plans the same batches (ross3d.eval.runner.Plan), drops those already answered, and takes a contiguous
block of the rest (scenes stay together). Each rank appends its answer lines to
`RESULTS/<benchmark>/parts/rank<r>.jsonl` as they are produced, one line per answer, flushed and synced after every
batch, so a killed run loses at most the batch in flight and a rerun (with any number of ranks) skips every
sample_id found there. After the last batch, rank 0 gathers the parts into `answers.jsonl` in sample order (the
bytes a one-process run writes), refusing to do so unless every sample of the split is answered, and removes the
parts. `settings.json` records what produced the answers; a rerun with other settings is refused (`--restart` starts
over). RESULTS must be a folder that every rank sees, as CACHE_DIR is for caching.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from ross3d.cache.distributed import barrier, rank, world_size
from ross3d.errors import InputError
from ross3d.eval.scoring import write_answers
from ross3d.progress import NullProgress, Progress

ANSWERS = "answers.jsonl"
PARTS = "parts"
SETTINGS = "settings.json"
# Test hook: a process answering its N-th batch (counted over all benchmarks) SIGKILLs itself once it is written.
KILL_AFTER_BATCHES = "ROSS3D_EVAL_KILL_AFTER_BATCHES"


def share(batches: list) -> list:
    """This rank's contiguous block of the batches (block sizes differ by at most one)."""
    n, w, r = len(batches), world_size(), rank()
    return batches[r * n // w:(r + 1) * n // w]


def _read_lines(path: Path) -> list[dict]:
    """The complete JSON lines of an answers file; an unfinished last line (a killed writer) is dropped."""
    text = path.read_text(encoding="utf-8")
    rows = text.split("\n")
    lines = []
    for number, row in enumerate(rows, start=1):
        if not row.strip():
            continue
        try:
            lines.append(json.loads(row))
        except json.JSONDecodeError:
            if number == len(rows):  # the tail after the last newline
                break
            raise InputError(path, f"line {number} is not JSON") from None
    return lines


@dataclass
class Progressed:
    """What one benchmark's run did: answers kept from an earlier run, and answered now (all ranks)."""

    resumed: int
    answered: int


class AnswerStore:
    """RESULTS/<benchmark>/: the answer parts of unfinished runs, the gathered answers and their settings."""

    def __init__(self, folder: str | Path, settings: dict):
        self.folder, self.settings = Path(folder), settings

    @property
    def answers_path(self) -> Path:
        return self.folder / ANSWERS

    def clear(self) -> None:
        """Forget every earlier answer (--restart)."""
        shutil.rmtree(self.folder / PARTS, ignore_errors=True)
        for name in (ANSWERS, SETTINGS):
            (self.folder / name).unlink(missing_ok=True)

    def _check_settings(self) -> None:
        path = self.folder / SETTINGS
        if not path.is_file():
            return
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(path, f"unreadable ({err}); pass --restart to start over") from None
        for key in sorted(set(old) | set(self.settings)):
            if old.get(key) != self.settings.get(key):
                raise InputError(path, f"the answers here were produced with {key}={old.get(key)!r}, this run has "
                                       f"{self.settings.get(key)!r}: pass --restart to start over")

    def answered(self) -> dict[str, dict]:
        """sample_id -> answer line of every answer already written (gathered file and parts)."""
        self._check_settings()
        files = [self.answers_path] if self.answers_path.is_file() else []
        files += sorted((self.folder / PARTS).glob("rank*.jsonl"))
        return {str(line["sample_id"]): line for path in files for line in _read_lines(path)}

    def claim(self) -> None:
        """Record the settings the answers are produced with (rank 0, before answering)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / SETTINGS).write_text(json.dumps(self.settings, indent=2, sort_keys=True))

    def open_part(self):
        """This rank's part file for appending; an unfinished last line left by a kill is cut off first."""
        path = self.folder / PARTS / f"rank{rank()}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            data = path.read_bytes()
            keep = data.rfind(b"\n") + 1
            if keep != len(data):
                with open(path, "r+b") as f:
                    f.truncate(keep)
        return open(path, "a", encoding="utf-8")

    def gather(self, sample_ids: list[str]) -> list[dict]:
        """Rank 0: every answer in sample order, written to answers.jsonl; the parts are removed. Refuses (naming
        the folder and the first missing sample) unless every sample is answered."""
        answered = self.answered()
        missing = [s for s in sample_ids if s not in answered]
        if missing:
            raise InputError(self.folder, f"{len(missing)} of {len(sample_ids)} samples are not answered "
                                          f"(first: {missing[0]}); rerun to answer them")
        lines = [answered[s] for s in sample_ids]
        tmp = self.answers_path.with_suffix(".jsonl.tmp")
        write_answers(tmp, lines)
        os.replace(tmp, self.answers_path)
        shutil.rmtree(self.folder / PARTS, ignore_errors=True)
        return lines


class _KillHook:
    """KILL_AFTER_BATCHES: SIGKILL this process after its N-th written batch (a deterministic crash for tests)."""

    def __init__(self) -> None:
        self.limit, self.count = int(os.environ.get(KILL_AFTER_BATCHES, "0")), 0

    def batch_written(self) -> None:
        self.count += 1
        if self.count == self.limit:
            os.kill(os.getpid(), signal.SIGKILL)


def answer_benchmarks(evaluator, benchmarks: list[str], out: str | Path, settings: dict, restart: bool = False,
                      progress: Progress = NullProgress()) -> tuple[dict[str, list[dict]], dict[str, Progressed]]:
    """Answer the benchmarks over all ranks (every rank calls this), resuming earlier answers. Rank 0 returns
    {benchmark: answer lines in sample order} (also written to RESULTS/<benchmark>/answers.jsonl) and what was
    resumed and answered; other ranks return empty dicts."""
    stores = {b: AnswerStore(Path(out) / b, settings) for b in benchmarks}
    if restart and rank() == 0:
        for store in stores.values():
            store.clear()
    barrier()
    done = {b: store.answered() for b, store in stores.items()}
    barrier()
    if rank() == 0:
        for store in stores.values():
            store.claim()
    kill, order, counts = _KillHook(), {}, {}
    for bench in benchmarks:
        plan = evaluator.plan(bench)
        order[bench] = [str(row.sample_id) for row in plan.rows]
        old = done[bench]
        pending = [b for b in plan.batches if any(order[bench][p] not in old for p in b)]
        resumed = sum(s in old for s in order[bench])
        counts[bench] = Progressed(resumed, len(order[bench]) - resumed)
        mine = share(pending)
        title = f"eval {bench}" + (f" (rank {rank()} of {world_size()})" if world_size() > 1 else "")
        progress.start(bench, sum(len(b) for b in mine), title, unit="samples")
        with stores[bench].open_part() as part:
            for batch in mine:
                new = [line for line in evaluator.answer(plan, batch, bench) if str(line["sample_id"]) not in old]
                part.write("".join(json.dumps(line) + "\n" for line in new))
                part.flush()
                os.fsync(part.fileno())
                kill.batch_written()
                progress.advance(bench, len(batch))
        progress.finish(bench)
    barrier()
    if rank() != 0:
        return {}, {}
    return {b: stores[b].gather(order[b]) for b in benchmarks}, counts
