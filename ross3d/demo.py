"""The demo's summary and its checks (docs/demo.md): DEMO_DIR/summary.json from the stages' outputs, the list of
reasons the run does not show the method working (empty when every benchmark is an honest win, the fitted VAE
round-trips held-out frames at MIN_VAE_PSNR_DB or better, and the reconstructions reach MIN_RECONSTRUCTION_COSINE),
and whether the model learned nothing at all (no headline metric above its baseline).
"""

from __future__ import annotations

import json
from pathlib import Path

from ross3d.errors import InputError
from ross3d.eval.baselines import HEADLINE
from ross3d.eval.scoring import BENCHMARKS, read_answers
from ross3d.eval.verdict import verdict

MIN_VAE_PSNR_DB = 20.0
MIN_RECONSTRUCTION_COSINE = 0.5


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "not found (did its demo stage run?)") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"not JSON ({err.msg})") from None


def _losses(log_path: Path) -> dict:
    from ross3d.train.metrics import Ema, read_log

    records = read_log(log_path)
    ema = Ema()
    smoothed = [ema.update(r["loss"]) for r in records]
    window = max(1, min(10, len(records) // 4))
    first = sum(r["loss"] for r in records[:window]) / window
    return {"train_steps": len(records), "loss_first": first, "loss_last_ema": smoothed[-1] if smoothed else None}


def build_summary(out: str | Path, stage_seconds: dict[str, float], vae_dir: str | Path,
                  reconstruction_json: str | Path) -> dict:
    """summary.json: stage seconds, per-benchmark verdicts beside the metrics and baselines, honest wins,
    degenerate benchmarks, the VAE fit, the reconstruction numbers, losses and picture paths."""
    out, results = Path(out), Path(out) / "results"
    metrics = {b: _read_json(results / b / "METRICS.json") for b in BENCHMARKS}
    baseline = {b: _read_json(results / b / "BASELINE.json") for b in BENCHMARKS}
    verdicts = {b: verdict(b, metrics[b], baseline[b], read_answers(results / b / "answers.jsonl"))
                for b in BENCHMARKS}
    recon = _read_json(Path(reconstruction_json))
    return {
        "stage_seconds": stage_seconds,
        "total_seconds": round(sum(stage_seconds.values()), 1),
        "verdicts": verdicts,
        "beats_baseline": [b for b in BENCHMARKS if verdicts[b]["honest_win"]],
        "degenerate": [b for b in BENCHMARKS if verdicts[b]["degenerate"]],
        "metrics": metrics,
        "baseline": baseline,
        "vae_fit": _read_json(Path(vae_dir) / "fit.json"),
        "reconstruction": [{k: r[k] for k in ("kind", "view", "cosine", "mse", "baseline_cosine")}
                           for r in recon["reconstructions"]],
        **_losses(out / "log.jsonl"),
        "pictures": {
            "bev_previews": sorted(str(p) for p in (out / "prep" / "previews").glob("*_bev.png")),
            "inspect_scene": str(out / "inspect_scene0000_00.png"),
            "loss_curve": str(out / "loss_curve.png"),
            "reconstruction": recon["picture"],
        },
    }


def failures(summary: dict) -> list[str]:
    """Why the demo does not show the method working; empty when it does."""
    problems = [f"{b}: {'; '.join(v['reasons'])}" for b, v in summary["verdicts"].items() if not v["honest_win"]]
    psnr = summary["vae_fit"]["heldout_psnr_db"]
    if psnr < MIN_VAE_PSNR_DB:
        problems.append(f"VAE: held-out round trip {psnr:.1f} dB < {MIN_VAE_PSNR_DB:g} dB")
    for r in summary["reconstruction"]:
        if not r["cosine"] >= MIN_RECONSTRUCTION_COSINE:
            name = "bev" if r["kind"] == "bev" else f"view {r['view']}"
            problems.append(f"reconstruction {name}: latent cosine {r['cosine']:.2f} < {MIN_RECONSTRUCTION_COSINE}")
    return problems


def learned_nothing(summary: dict) -> bool:
    """Whether no benchmark's headline metric is above its baseline's, honest or not: the pipeline did not learn."""
    return not any(summary["metrics"][b][HEADLINE[b]] > summary["baseline"][b][HEADLINE[b]] for b in BENCHMARKS)
