"""One run per output folder: while a run holds PREP_DIR or CACHE_DIR, a second `prep scannet` / `cache-latents`
exits at once naming the holder's pid and touches nothing; the lock goes with its holder, even on SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ross3d.cache.run import cache_latents
from ross3d.errors import InputError
from ross3d.locking import exclusive_lock
from ross3d_cli.app import app

HOLD = ("import sys\nfrom ross3d.locking import exclusive_lock\n"
        "with exclusive_lock(sys.argv[1], sys.argv[2]):\n    print('locked', flush=True)\n    sys.stdin.read()\n")


@pytest.fixture
def holder():
    """Start a process holding the lock of a folder as `what`; yields a starter, kills what it started."""
    started = []

    def start(folder: Path, what: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), what], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_second_prep_run_is_refused_and_touches_nothing(tmp_path, holder):
    scans, prep = tmp_path / "scans", tmp_path / "prep"
    (scans / "scene0000_00").mkdir(parents=True)
    work = prep / "scenes" / ".scene0000_00.tmp-0123abcd"  # the first run's scene in progress
    work.mkdir(parents=True)
    (prep / "manifest.json").write_text("{}")
    first = holder(prep, "prep scannet")
    result = CliRunner().invoke(app, ["prep", "scannet", str(scans), str(prep), "--scenes", "scene0000_00"])
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert f"{prep}: in use by another run (prep scannet, pid {first.pid}, lock .ross3d.lock)" in line
    assert work.is_dir() and (prep / "manifest.json").read_text() == "{}"
    assert not (prep / "scenes.parquet").exists()
    first.send_signal(signal.SIGKILL)
    first.wait()
    with exclusive_lock(prep, "prep scannet") as path:  # the kernel released it with its holder
        assert path.read_text() == f"prep scannet, pid {os.getpid()}\n"


def test_second_cache_run_is_refused_before_loading_anything(tmp_path, holder):
    cache = tmp_path / "cache"
    first = holder(cache, "cache-latents")
    with pytest.raises(InputError) as err:  # the VAE folder does not exist: the lock is checked first
        cache_latents(tmp_path / "no-prep", cache, tmp_path / "no-vae")
    assert str(err.value).startswith(f"{cache}: in use by another run (cache-latents, pid {first.pid},")
    assert sorted(p.name for p in cache.iterdir()) == [".ross3d.lock"]


def test_ranks_of_one_torchrun_lock_their_own_files(tmp_path, holder, monkeypatch):
    holder(tmp_path, "cache-latents")  # rank 0 of a run
    monkeypatch.setenv("RANK", "1")
    with exclusive_lock(tmp_path, "cache-latents") as path:
        assert path.name == ".ross3d.lock.rank1"
