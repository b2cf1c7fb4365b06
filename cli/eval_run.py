"""`ross3d eval run` (a checkpoint on the benchmarks) and `ross3d eval score` (an answers file, ours or the
original release's), registered into the `eval` group."""

from __future__ import annotations

from pathlib import Path

import typer

from ross3d_cli.eval import eval_app

ALL = "all"


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
    benchmark: str = typer.Option(ALL, help="scanqa, sqa3d, scan2cap, scanrefer, multi3drefer or all."),
    checkpoint: Path = typer.Option(..., help="A ross3d model folder (train export or convert-checkpoint)."),
    cache: Path = typer.Option(..., help="CACHE_DIR with the scenes' cached tensors."),
    samples: Path = typer.Option(..., help="PREP_DIR/samples.parquet (objects.parquet and proposals.parquet beside)."),
    out: Path = typer.Option(..., help="RESULTS_DIR: <benchmark>/answers.jsonl, METRICS.json, METRICS.csv."),
    split: str = typer.Option(None, help="Default: val (test for SQA3D)."),
    strategy: str = typer.Option("uniform", help="Frame selection the model was trained with."),
    batch_size: int = typer.Option(8, help="Samples per forward (same scene)."),
    max_new_tokens: int = typer.Option(512, help="Generation length limit for text tasks (the original's 512; "
                                                 "generation stops earlier at <|im_end|>)."),
    limit: int = typer.Option(None, help="Only the first N samples of each benchmark."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    spatial_instruction: bool = typer.Option(None, "--spatial-instruction/--no-spatial-instruction",
                                             help="Default: as the checkpoint was trained (the original's eval "
                                                  "omits it; --no-spatial-instruction reproduces that)."),
    scan2cap_unmatched: str = typer.Option("original", help="original (the release) or m@0.5 (standard)."),
    baseline: bool = typer.Option(True, help="Also score the trivial baseline (most frequent answer, random "
                                             "proposal) on the same samples -> BASELINE.json."),
) -> None:
    """Answer the benchmarks' samples with a checkpoint and score them (answers in the original's jsonl format)."""
    from ross3d.eval.baselines import baseline_metrics
    from ross3d.eval.runner import EvalOptions, Evaluator
    from ross3d.eval.scoring import BENCHMARKS, references_from_samples, score, write_answers, write_metrics
    from ross3d_cli.console import RichProgress, console, user_errors

    benchmarks = list(BENCHMARKS) if benchmark == ALL else benchmark.split(",")
    results, baselines = {}, {}
    with user_errors():
        options = EvalOptions(strategy=strategy, batch_size=batch_size, max_new_tokens=max_new_tokens, limit=limit,
                              split=split, device=device, spatial_instruction=spatial_instruction)
        evaluator = Evaluator(checkpoint, cache, samples.parent, options)
        for bench in benchmarks:
            with RichProgress() as progress:
                lines = evaluator.answers(bench, progress)
            write_answers(out / bench / "answers.jsonl", lines)
            results[bench] = score(bench, lines, references_from_samples(samples, bench), scan2cap_unmatched)
            write_metrics(results[bench], out / bench / "METRICS.json")
            if baseline:
                baselines[bench] = baseline_metrics(samples.parent, bench, limit=limit)
                write_metrics(baselines[bench], out / bench / "BASELINE.json")
    _print_table(results, baselines)
    console.print(f"answers and every metric in {out}/<benchmark>/ (answers.jsonl, METRICS.json, BASELINE.json)")


def eval_score(
    benchmark: str = typer.Argument(..., help="scanqa, sqa3d, scan2cap, scanrefer or multi3drefer."),
    answers: Path = typer.Argument(..., help="Answers jsonl (ross3d eval run or the original release)."),
    questions: Path = typer.Option(None, help="The original's llava-style question JSON (references)."),
    samples: Path = typer.Option(None, help="PREP_DIR/samples.parquet (references)."),
    out: Path = typer.Option(..., help="METRICS.json to write (a CSV is written beside it)."),
    scan2cap_unmatched: str = typer.Option("original", help="original (the release) or m@0.5 (standard)."),
) -> None:
    """Score an answers file; prints the metrics and writes METRICS.json + METRICS.csv."""
    from ross3d.eval.scoring import (check_lines, read_answers, references_from_questions, references_from_samples,
                                     score, write_metrics)
    from ross3d_cli.console import user_errors

    with user_errors():
        if questions is not None and samples is not None:
            from ross3d.errors import ConfigError

            raise ConfigError("--questions and --samples are alternatives: give one of them")
        refs = None
        if questions is not None:
            refs = references_from_questions(questions)
        elif samples is not None:
            refs = references_from_samples(samples, benchmark)
        lines = read_answers(answers)
        check_lines(benchmark, lines, answers)
        metrics = score(benchmark, lines, refs, scan2cap_unmatched)
        write_metrics(metrics, out)
    _print_metrics(benchmark, metrics)


def register(app: typer.Typer) -> None:
    eval_app.command("run")(eval_run)
    eval_app.command("score")(eval_score)
