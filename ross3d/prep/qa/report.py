"""Problem counting for the converters: bad records are counted per (source file, problem) with their first ids,
never dropped silently; the report also holds row counts per task/split and notes (skipped split files)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

FIRST_IDS = 5


class RecordError(Exception):
    """A record that cannot become a sample; the message is the problem kind (e.g. "unknown scene")."""


@dataclass
class ProblemCount:
    count: int = 0
    first_ids: list[str] = field(default_factory=list)


@dataclass
class QaReport:
    """What `prep_qa` did: rows per (task, split), problems per (source, kind), notes, and where it wrote."""

    rows: Counter = field(default_factory=Counter)
    problems: dict[tuple[str, str], ProblemCount] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unmatched: Counter = field(default_factory=Counter)  # Scan2Cap objects without a proposal (IoU < 0.5), by split
    samples_path: str | None = None
    proposals_path: str | None = None
    sample_ids: set[str] = field(default_factory=set)  # of the records converted so far (duplicates are problems)

    def add_problem(self, source: str, kind: str, record_id: object) -> None:
        entry = self.problems.setdefault((source, kind), ProblemCount())
        entry.count += 1
        if len(entry.first_ids) < FIRST_IDS:
            entry.first_ids.append(str(record_id))

    @property
    def n_problems(self) -> int:
        return sum(p.count for p in self.problems.values())

    def problem_lines(self) -> list[str]:
        return [f"{source}: {p.count} x {kind} (first: {', '.join(p.first_ids)})"
                for (source, kind), p in self.problems.items()]
