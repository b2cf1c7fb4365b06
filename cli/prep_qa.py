"""`ross3d prep qa`: benchmark annotation files -> PREP_DIR/samples.parquet (logic in ross3d.prep.qa.run)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ross3d_cli.prep import prep_app


def qa(
    prep_dir: Path = typer.Argument(..., help="PREP_DIR written by `ross3d prep scannet` (objects.parquet)."),
    scanqa: Optional[Path] = typer.Option(None, "--scanqa", help="Folder with ScanQA_v1.0_{train,val}.json."),
    sqa3d: Optional[Path] = typer.Option(None, "--sqa3d", help="SQA3D sqa_task/ folder (or its balanced/)."),
    scanrefer: Optional[Path] = typer.Option(
        None, "--scanrefer", help="Folder with ScanRefer_filtered_{train,val}.json (also gives Scan2Cap)."),
    multi3drefer: Optional[Path] = typer.Option(
        None, "--multi3drefer", help="Folder with multi3drefer_{train,val}.json."),
    label_map: Optional[Path] = typer.Option(
        None, "--label-map", help="scannetv2-labels.combined.tsv (needed with --scanrefer)."),
    proposals: Optional[Path] = typer.Option(
        None, "--proposals",
        help="Predicted boxes: a JSON object mapping \"scannet/<scene>\" to lists of (cx,cy,cz,dx,dy,dz) boxes, "
             "or a folder of Mask3D <scene>.mask.npz files; written to PREP_DIR/proposals.parquet and used for "
             "Scan2Cap val."),
    scans: Optional[Path] = typer.Option(
        None, "--scans", help="ScanNet scans folder for mask proposals (default: the one in manifest.json)."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Write the good rows even if some records are bad."),
) -> None:
    """Convert benchmark annotations into PREP_DIR/samples.parquet with the original prompts."""
    from rich.table import Table

    from ross3d.prep.qa.run import QaSources, prep_qa
    from ross3d_cli.console import RichProgress, console, user_errors

    with user_errors(), RichProgress() as progress:
        report = prep_qa(prep_dir, QaSources(scanqa, sqa3d, scanrefer, multi3drefer), label_map=label_map,
                         proposals=proposals, scans_dir=scans, keep_going=keep_going, progress=progress)
    table = Table(title="samples per task and split")
    for column in ("task", "split", "rows", "scan2cap unmatched"):
        table.add_column(column, justify="left" if column in ("task", "split") else "right")
    for (task, split), n in sorted(report.rows.items()):
        unmatched = str(report.unmatched[split]) if task == "scan2cap" and split in report.unmatched else ""
        table.add_row(task, split, f"{n:,}", unmatched)
    console.print(table)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    for line in report.problem_lines():
        console.print(f"[red]bad records:[/] {line}", highlight=False)
    if report.samples_path is None:
        console.print(f"[bold red]error:[/] {report.n_problems} bad records; nothing written "
                      "(fix the input or pass --keep-going)", highlight=False)
        raise typer.Exit(1)
    console.print(f"wrote {report.samples_path}" + (f" and {report.proposals_path}" if report.proposals_path else ""),
                  highlight=False)


def register(app: typer.Typer) -> None:
    prep_app.command("qa")(qa)
