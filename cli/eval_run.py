"""`ross3d eval run` (a checkpoint on the benchmarks) and `ross3d eval score` (an answers file, ours or the
original release's), registered into the `eval` group."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ross3d_cli.choices import Benchmark, Strategy
from ross3d_cli.eval import eval_app


def _print_table(results: dict[str, dict], baselines: dict[str, dict] | None = None) -> None:
    from rich.table import Table

    from ross3d.eval.baselines import HEADLINE
    from ross3d_cli.console import console

    table = Table(title="ross3d eval")
    columns = ["benchmark", "n", "metric (%)", "model"] + (["baseline"] if baselines else [])
    for col in columns:
        table.add_column(col, justify="right" if col in ("n", "model", "baseline") else "left")
    for bench, metrics in results.items():
        key = HEADLINE[bench]
        row = [bench, str(metrics.get("n", "")), key, f"{metrics.get(key, float('nan')):.1f}"]
        if baselines:
            row.append(f"{baselines[bench].get(key, float('nan')):.1f}")
        table.add_row(*row)
    console.print(table)


def _print_metrics(benchmark: str, metrics: dict) -> None:
    from rich.table import Table

    from ross3d_cli.console import console

    table = Table(title=f"{benchmark}: {metrics.get('n', '?')} answers")
    table.add_column("metric")
    table.add_column("%", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.2f}")
    console.print(table)


def eval_run(
    benchmark: List[Benchmark] = typer.Option([Benchmark.all], help="A benchmark or all (repeatable)."),
    checkpoint: Path = typer.Option(..., help="A ross3d model folder (train export or convert-checkpoint)."),
    cache: Path = typer.Option(..., help="CACHE_DIR with the scenes' cached tensors."),
    samples: Path = typer.Option(..., help="PREP_DIR/samples.parquet (objects.parquet and proposals.parquet beside)."),
    out: Path = typer.Option(..., help="RESULTS_DIR: <benchmark>/answers.jsonl, METRICS.json, METRICS.csv (a folder "
                                       "every rank sees)."),
    split: str = typer.Option(None, help="Default: val (test for SQA3D)."),
    strategy: Strategy = typer.Option(Strategy.uniform, help="Frame selection the model was trained with."),
    batch_size: int = typer.Option(8, help="Samples per forward (same scene, similar prompt lengths)."),
    max_new_tokens: int = typer.Option(512, help="Generation length limit for text tasks (the original's 512; "
                                                 "generation stops earlier at <|im_end|>)."),
    limit: int = typer.Option(None, help="Only the first N samples of each benchmark."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when available; cuda:LOCAL_RANK "
                                                    "under torchrun)."),
    spatial_instruction: bool = typer.Option(None, "--spatial-instruction/--no-spatial-instruction",
                                             help="Default: as the checkpoint was trained (the original's eval "
                                                  "omits it; --no-spatial-instruction reproduces that)."),
    scan2cap_unmatched: str = typer.Option("original", help="original (the release) or m@0.5 (standard)."),
    baseline: bool = typer.Option(True, help="Also score the trivial baseline (most frequent answer, random "
                                             "proposal) on the same samples -> BASELINE.json."),
    restart: bool = typer.Option(False, "--restart", help="Forget the answers of an earlier, interrupted run "
                                                          "(by default a rerun answers only what is missing)."),
) -> None:
    """Answer the benchmarks' samples with a checkpoint and score them (answers in the original's jsonl format).
    Under torchrun or deepspeed the samples are shared out over the ranks; a rerun resumes."""
    import contextlib

    from ross3d.cache.distributed import rank
    from ross3d.eval.run import evaluate
    from ross3d.eval.runner import EvalOptions
    from ross3d.eval.scoring import BENCHMARKS
    from ross3d.progress import NullProgress
    from ross3d_cli.console import RichProgress, console, user_errors

    chosen = [b.value for b in benchmark]
    benchmarks = list(BENCHMARKS) if Benchmark.all.value in chosen else list(dict.fromkeys(chosen))
    with user_errors():
        options = EvalOptions(strategy=strategy.value, batch_size=batch_size, max_new_tokens=max_new_tokens,
                              limit=limit, split=split, device=device, spatial_instruction=spatial_instruction)
        with RichProgress() if rank() == 0 else contextlib.nullcontext(NullProgress()) as progress:
            result = evaluate(checkpoint, cache, samples, out, benchmarks, options, restart=restart,
                              scan2cap_unmatched=scan2cap_unmatched, baseline=baseline, progress=progress)
    if result is None:
        return
    for bench, done in result.progress.items():
        if done.resumed:
            console.print(f"{bench}: {done.resumed} answers resumed from an earlier run, {done.answered} answered now",
                          highlight=False)
    _print_table(result.metrics, result.baselines)
    console.print(f"{sum(p.answered for p in result.progress.values())} samples answered in {result.seconds:.1f} s "
                  f"({result.samples_per_s:.2f} samples/s); answers and every metric in {out}/<benchmark>/ "
                  "(answers.jsonl, METRICS.json, BASELINE.json)", highlight=False)


def eval_score(
    benchmark: str = typer.Argument(..., help="scanqa, sqa3d, scan2cap, scanrefer or multi3drefer."),
    answers: Path = typer.Argument(..., help="Answers jsonl (ross3d eval run or the original release)."),
    questions: Path = typer.Option(None, help="The original's llava-style question JSON (references)."),
    samples: Path = typer.Option(None, help="PREP_DIR/samples.parquet (references)."),
    out: Path = typer.Option(..., help="METRICS.json to write (a CSV is written beside it)."),
    scan2cap_unmatched: str = typer.Option("original", help="original (the release) or m@0.5 (standard)."),
    split: str = typer.Option(None, help="The samples' split to score against with --samples (default: the one the "
                                         "benchmark reports: test for SQA3D, val for the others)."),
    partial: bool = typer.Option(False, "--partial", help="Score an answers file that covers only part of the "
                                                          "references (refused by default)."),
) -> None:
    """Score an answers file; prints the metrics and writes METRICS.json + METRICS.csv. With references, a file that
    does not answer every referenced sample is refused (naming what is missing) unless --partial."""
    from ross3d.eval.scoring import (check_lines, coverage, read_answers, references_from_questions,
                                     references_from_samples, score, write_metrics)
    from ross3d_cli.console import console, user_errors

    with user_errors():
        if questions is not None and samples is not None:
            from ross3d.errors import ConfigError

            raise ConfigError("--questions and --samples are alternatives: give one of them")
        refs = None
        if questions is not None:
            refs = references_from_questions(questions)
        elif samples is not None:
            refs = references_from_samples(samples, benchmark, split)
        lines = read_answers(answers)
        check_lines(benchmark, lines, answers)
        metrics = score(benchmark, lines, refs, scan2cap_unmatched)  # an answer without a reference fails here
        answered, expected, missing = coverage(lines, refs) if refs else (len(lines), None, [])
        if missing and not partial:
            from ross3d.errors import InputError

            raise InputError(answers, f"answers {answered} of the {expected} {benchmark} samples of the references; "
                                      f"missing {', '.join(map(repr, missing[:3]))}"
                                      f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''} "
                                      "(--partial scores it anyway)")
        write_metrics(metrics, out)
    _print_metrics(benchmark, metrics)
    if refs:
        console.print(f"coverage: {answered} of {expected} {benchmark} samples answered"
                      + ("" if not missing else " (partial answers file)"), highlight=False)


def register(app: typer.Typer) -> None:
    eval_app.command("run")(eval_run)
    eval_app.command("score")(eval_score)
