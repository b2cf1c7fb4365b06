"""`ross3d eval run` at scale: two CPU ranks under torchrun write the same answer files as one process; a run killed
after its first batch resumes without answering that batch again; a rerun with other settings is refused; the
gathering step refuses answers that do not cover the split; batches are length-sorted per scene with the answer
order restored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ross3d.errors import InputError
from ross3d.eval.shards import KILL_AFTER_BATCHES, AnswerStore, share
from ross3d_cli.app import app
from torch_threads import one_torch_thread

BENCHMARKS = ("scanqa", "sqa3d", "scan2cap", "scanrefer", "multi3drefer")
ARGS = ["--limit", "5", "--batch-size", "2", "--max-new-tokens", "3", "--device", "cpu", "--no-baseline"]
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}


def _command(inputs: dict, out: Path) -> list[str]:
    return ["eval", "run", "--checkpoint", str(inputs["checkpoint"]), "--cache", str(inputs["cache"]),
            "--samples", str(inputs["prep"] / "samples.parquet"), "--out", str(out), *ARGS]


def _in_process(args: list[str]):
    """The CLI in this process with one thread, as every torchrun rank runs (OMP_NUM_THREADS=1)."""
    with one_torch_thread():
        return CliRunner().invoke(app, args)


def _first_samples(prep: Path, bench: str, n: int) -> list[str]:
    """The first n sample_ids of the benchmark's standard split in samples.parquet, stably ordered by scene."""
    import pyarrow.parquet as pq

    split = "test" if bench == "sqa3d" else "val"
    rows = [r for r in pq.read_table(prep / "samples.parquet", columns=["sample_id", "task", "split", "scene_id"])
            .to_pylist() if r["task"] == bench and r["split"] == split]
    return [r["sample_id"] for r in sorted(rows, key=lambda r: r["scene_id"])[:n]]


def _files(out: Path) -> dict[str, bytes]:
    return {b: (out / b / "answers.jsonl").read_bytes() for b in BENCHMARKS}


@pytest.fixture(scope="module")
def reference(eval_inputs, tmp_path_factory):
    """Answer files of one plain process."""
    out = tmp_path_factory.mktemp("one_process")
    result = _in_process(_command(eval_inputs, out))
    assert result.exit_code == 0, result.output
    return out


def test_two_ranks_under_torchrun_write_the_files_of_one_process(eval_inputs, reference, tmp_path):
    out = tmp_path / "two_ranks"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "ross3d_cli.app", *_command(eval_inputs, out)]
    done = subprocess.run(cmd, env={**CLEAN_ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _files(out) == _files(reference)
    for bench in BENCHMARKS:
        ids = [json.loads(x)["sample_id"] for x in (out / bench / "answers.jsonl").read_text().splitlines()]
        assert ids == _first_samples(eval_inputs["prep"], bench, 5)
        assert (out / bench / "METRICS.json").read_text() == (reference / bench / "METRICS.json").read_text()
        assert not (out / bench / "parts").exists()


def test_a_killed_run_resumes_without_answering_its_first_batch_again(eval_inputs, reference, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ross3d_cli.app", *_command(eval_inputs, out)]
    killed = subprocess.run(cmd, env={**CLEAN_ENV, "OMP_NUM_THREADS": "1", KILL_AFTER_BATCHES: "1"},
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    part = out / "scanqa" / "parts" / "rank0.jsonl"
    first = [json.loads(x) for x in part.read_text().splitlines()]
    assert len(first) == 2  # the first batch, nothing of later batches or benchmarks
    assert not (out / "sqa3d" / "parts" / "rank0.jsonl").exists()
    expected = {json.loads(x)["sample_id"]: json.loads(x) for x in
                (reference / "scanqa" / "answers.jsonl").read_text().splitlines()}
    assert all(line == expected[line["sample_id"]] for line in first)
    # mark the kept answers: had the rerun answered them again, the marks would be gone
    part.write_text("".join(json.dumps({**line, "pred_response": "KEPT"}) + "\n" for line in first))

    result = _in_process(_command(eval_inputs, out))
    assert result.exit_code == 0, result.output
    assert "scanqa: 2 answers resumed from an earlier run, 3 answered now" in result.output
    final = [json.loads(x) for x in (out / "scanqa" / "answers.jsonl").read_text().splitlines()]
    kept = {line["sample_id"] for line in first}
    assert [line["pred_response"] for line in final if line["sample_id"] in kept] == ["KEPT", "KEPT"]
    restored = "".join(json.dumps(expected[line["sample_id"]] if line["sample_id"] in kept else line) + "\n"
                       for line in final)
    assert restored.encode() == _files(reference)["scanqa"]
    assert {b: f for b, f in _files(out).items() if b != "scanqa"} == \
        {b: f for b, f in _files(reference).items() if b != "scanqa"}


def test_a_rerun_with_other_settings_is_refused_until_restart(eval_inputs, reference, tmp_path):
    out = tmp_path / "settings"
    args = _command(eval_inputs, out) + ["--benchmark", "sqa3d"]
    assert _in_process(args).exit_code == 0
    other = [a if a != "3" else "4" for a in args]  # --max-new-tokens 4
    refused = _in_process(other)
    assert refused.exit_code == 1
    message = refused.output.strip()
    assert "\n" not in message and "settings.json" in message and "max_new_tokens=3" in message
    assert "--restart" in message
    restarted = _in_process(other + ["--restart"])
    assert restarted.exit_code == 0, restarted.output
    assert "resumed" not in restarted.output
    assert json.loads((out / "sqa3d" / "settings.json").read_text())["max_new_tokens"] == 4


@pytest.mark.parametrize("n", [0, 1, 5, 7])
def test_ranks_take_disjoint_contiguous_blocks_of_the_batches(monkeypatch, n):
    blocks = []
    for r in range(3):
        monkeypatch.setenv("RANK", str(r))
        monkeypatch.setenv("WORLD_SIZE", "3")
        blocks.append(share(list(range(n))))
    assert sum(blocks, []) == list(range(n))
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_gathering_refuses_answers_that_miss_samples(tmp_path):
    store = AnswerStore(tmp_path / "scanqa", {"max_new_tokens": 3})
    with store.open_part() as part:
        part.write(json.dumps({"sample_id": "a", "pred_response": "x"}) + "\n")
    with pytest.raises(InputError, match=r"scanqa: 2 of 3 samples are not answered \(first: b\)"):
        store.gather(["a", "b", "c"])
    assert not store.answers_path.exists()


def test_an_unfinished_last_line_is_dropped_and_cut_off(tmp_path):
    store = AnswerStore(tmp_path / "sqa3d", {})
    part = tmp_path / "sqa3d" / "parts" / "rank0.jsonl"
    part.parent.mkdir(parents=True)
    part.write_text('{"sample_id": "a"}\n{"sample_id": "b", "pred_')  # killed while writing b
    assert list(store.answered()) == ["a"]
    with store.open_part() as f:
        f.write('{"sample_id": "b"}\n')
    assert part.read_text() == '{"sample_id": "a"}\n{"sample_id": "b"}\n'
    assert [line["sample_id"] for line in store.gather(["b", "a"])] == ["b", "a"]


def test_batches_are_length_sorted_per_scene_and_answers_keep_the_sample_order(eval_inputs):
    from ross3d.eval.runner import EvalOptions, Evaluator

    evaluator = Evaluator(eval_inputs["checkpoint"], eval_inputs["cache"], eval_inputs["prep"],
                          EvalOptions(batch_size=3, max_new_tokens=2, device="cpu"))
    plan = evaluator.plan("scanqa")
    assert sorted(p for batch in plan.batches for p in batch) == list(range(len(plan.rows)))
    for batch in plan.batches:
        assert len({plan.rows[p].scene_id for p in batch}) == 1 and len(batch) <= 3
    for scene in {row.scene_id for row in plan.rows}:
        lengths = [len(plan.encoded[p].input_ids) for batch in plan.batches for p in batch
                   if plan.rows[p].scene_id == scene]
        assert lengths == sorted(lengths)
    assert [line["sample_id"] for line in evaluator.answers("scanqa")] == [row.sample_id for row in plan.rows]


def test_settings_tell_a_checkpoint_retrained_in_place_from_the_old_one(tmp_path):
    from ross3d.eval.run import run_settings
    from ross3d.eval.runner import EvalOptions

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"old weights")
    before = run_settings(tmp_path, EvalOptions(device="cpu"))
    assert before == run_settings(tmp_path, EvalOptions(device="cuda"))  # the device is not a setting
    weights.write_bytes(b"new weights, longer")
    after = run_settings(tmp_path, EvalOptions(device="cpu"))
    assert after["checkpoint"] == before["checkpoint"] == str(tmp_path.resolve())
    assert after["checkpoint_files"]["model.safetensors"][0] == len(b"new weights, longer") != \
        before["checkpoint_files"]["model.safetensors"][0]
    assert run_settings(tmp_path, EvalOptions(max_new_tokens=7))["max_new_tokens"] == 7
