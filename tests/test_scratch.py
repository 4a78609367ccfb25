"""The server's temporary files: one capped folder per server, gone at stop and after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from webapp import scratch

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, size: int, age_s: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_trim_deletes_oldest_files_beyond_the_cap_and_old_files(tmp_path, monkeypatch):
    monkeypatch.setattr(scratch, "EMPTY_FOLDER_SWEEP_S", 0)  # empty folders looked for at every trim
    folder = scratch.Scratch(tmp_path / "server-1", max_bytes=10_000, max_age_s=3600)
    files = [write(folder.gradio / f"upload{i}" / "a.png", 3_000, age_s=100 - i) for i in range(5)]
    stale = write(folder.downloads / "run-x" / "grid.png", 10, age_s=7200)
    example = write(folder.gradio / "example" / "cat.jpg", 10, age_s=7200)  # Gradio serves it
    fresh = folder.downloads / "run-new" / "overlays"
    fresh.mkdir(parents=True)  # a request's folder, about to be filled
    assert folder.size() == 15_020
    folder.keep([str(example)])
    left = folder.trim()
    assert left <= 8_000 and left == folder.size()  # under the cap with room to spare
    assert not stale.exists() and stale.parent.exists()  # too old; its folder goes once settled
    assert example.exists()  # kept, however old
    assert [f.exists() for f in files] == [False, False, False, True, True]  # oldest out first
    assert folder.gradio.is_dir() and folder.downloads.is_dir() and fresh.is_dir()
    os.utime(stale.parent, (0, 0))
    folder.trim()
    assert files[-1].exists()  # under the cap: nothing more goes
    assert not stale.parent.exists()
    folder.remove()
    assert not folder.root.exists()


def test_empty_folders_are_looked_for_at_most_every_sweep_interval(tmp_path, monkeypatch):
    folder = scratch.Scratch(tmp_path / "server-1", max_bytes=10_000, max_age_s=3600)
    walks = []
    monkeypatch.setattr(scratch, "_remove_empty_folders", lambda root, keep: walks.append(root))
    folder.trim()
    folder.trim()  # within EMPTY_FOLDER_SWEEP_S of the first: no walk
    assert walks == [folder.root]
    monkeypatch.setattr(scratch, "EMPTY_FOLDER_SWEEP_S", 0)
    folder.trim()
    assert walks == [folder.root] * 2
    folder.remove()


def _python(code: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )


CLAIM = """
    import time
    from webapp import scratch
    folder = scratch.claim(10**6, 60)
    print(folder.root, flush=True)
    (folder.gradio / "upload.png").write_bytes(b"x" * 100)
    time.sleep({linger})
"""


def test_the_folder_is_removed_at_exit_and_by_the_next_start_after_a_crash(tmp_path):
    """(SIGTERM: tests/test_web_limits.py stops `python app.py` with it.)"""
    env = {scratch.ENV_VAR: str(tmp_path)}
    ended = _python(CLAIM.format(linger=0), env)
    root = Path(ended.stdout.readline().strip())
    assert ended.wait(30) == 0 and not root.exists()  # a normal exit cleans up

    crashed = _python(CLAIM.format(linger=60), env)
    crashed_root = Path(crashed.stdout.readline().strip())
    running = _python(CLAIM.format(linger=60), env)
    running_root = Path(running.stdout.readline().strip())
    assert crashed_root != running_root and crashed_root.exists() and running_root.exists()
    os.kill(crashed.pid, signal.SIGKILL)  # no clean-up code runs
    crashed.wait(30)
    assert crashed_root.exists()
    os.utime(crashed_root, (0, 0))
    scratch.remove_abandoned(tmp_path)  # what the next start does
    assert not crashed_root.exists()  # its lock died with it
    assert running_root.exists()  # a running server's folder is left alone
    running.terminate()
    running.wait(30)
