"""The app's quick paths (issue 14): the page gets the maps (their pictures inside the answer,
nothing written to disk) before the grid and the zip are drawn, a re-render runs no engine and
encodes only the tiles and the grid, a streamed result is kept once, a fast run sends no
progress updates, and the page starts without the faithfulness panel's plotting code. Behaviour
only: the timings are bench/app_latency.py's.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from results_page import tiles_of  # noqa: E402

from explainers import export  # noqa: E402
from webapp import config, handlers, results_view, state  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPOSITE = ROOT / "assets" / "cat_and_coffee.jpg"
FAST = ["gradcam", "layercam"]


def _names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def test_the_maps_come_before_the_grid_and_the_zip_are_written():
    answers = handlers.explain_stream(str(COMPOSITE), methods=FAST, top_k=2)
    view, _, archive, status, grid, result = next(answers)
    tiles = {f"cat_and_coffee_{m}_{t}-{result.labels[t].replace(' ', '_')}.png" for m in FAST for t in result.targets}
    assert archive is None and grid is None and "4 maps" in status
    assert len(tiles_of(view)) == 2 * (1 + len(FAST)) and _names(result.shown.folder) == set()  # no file yet
    *_, archive, _, grid, again = next(answers)
    assert again is result and Path(grid).parent == result.shown.folder
    with zipfile.ZipFile(archive) as zf:
        assert {"cat_and_coffee_input.png", "cat_and_coffee_grid.png", "cat_and_coffee_maps.npz"} | tiles <= set(
            zf.namelist()
        )
    assert next(answers, None) is None


def test_a_rerender_runs_no_engine_and_encodes_only_the_tiles_and_the_grid(monkeypatch):
    result = handlers.explain_image(str(COMPOSITE), methods=FAST, top_k=2)[-1]
    before, calls = result.shown, state.ENGINE_CALLS
    pngs, jpegs = [], []
    png, jpeg = export.png_bytes, results_view.picture_uri
    monkeypatch.setattr(export, "png_bytes", lambda picture: pngs.append(picture.size) or png(picture))
    monkeypatch.setattr(results_view, "picture_uri", lambda picture: jpegs.append(picture.size) or jpeg(picture))
    view, grid, download, _ = handlers.rerender(result, "viridis", 0.7, True)
    assert state.ENGINE_CALLS == calls and download.value is None
    assert len(jpegs) == 1 + len(result.tiles) and len(pngs) == 1  # the page's tiles (the input once), the grid
    after = result.shown
    assert after.folder != before.folder and Path(grid) == after.folder / after.grid_name
    assert _names(after.folder) == {after.grid_name}  # no zip, no tiles' PNGs, no photos


def test_the_download_after_the_first_answer_has_the_grid_too():
    result = next(handlers.explain_stream(str(COMPOSITE), methods=["gradcam"], top_k=1))[-1]
    archive, _ = handlers.prepare_download(result)
    with zipfile.ZipFile(archive) as zf:
        assert "cat_and_coffee_grid.png" in zf.namelist()


@pytest.mark.parametrize(("methods", "results"), [(FAST, 1), (["gradcam", "smoothgrad"], 2)])
def test_a_streamed_result_is_kept_once(methods, results):
    web = handlers.for_the_web(handlers.explain_stream, frozenset({config.DEFAULT_MODEL}), handlers.upload_policy())
    kept = len(state.RESULTS)
    keys = [answer[-1] for answer in web(str(COMPOSITE), methods=methods, top_k=1)]
    assert len(set(keys)) == results and len(state.RESULTS) == kept + results
    assert state.RESULTS.get(keys[-1]).methods == methods


@pytest.mark.parametrize("every", [math.inf, 0.0])
def test_progress_is_sent_at_most_every_interval_but_the_deadline_is_checked_at_every_step(monkeypatch, every):
    monkeypatch.setattr(handlers, "PROGRESS_EVERY_S", every)
    checks, sent = [], []
    checkpoint = state.checkpoint
    monkeypatch.setattr(state, "checkpoint", lambda deadline: checks.append(1) or checkpoint(deadline))
    handlers.explain_image(str(COMPOSITE), methods=FAST, top_k=1, progress=lambda *a, **k: sent.append(a))
    assert len(checks) >= 3
    assert len(sent) == (1 if every else 1 + len(checks))  # "Loading…", then (with 0 s) every step


def test_the_page_starts_without_the_plotting_code(tmp_path):
    code = (
        "import sys, app; app.build_app(); "
        "print(sorted({'explainers.plots', 'matplotlib.figure', 'matplotlib.pyplot'} & set(sys.modules)))"
    )
    env = {**os.environ, "EXPLAIN_APP_TEMP": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
