"""What one web visitor can cost the server, and what holds afterwards: request bodies and
blocked routes, a share of the queue per session and per address, runs that stop when the
visitor goes, a time budget per request, bounded temporary files, and cleaning up at stop.
All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import httpx  # noqa: E402
import pytest  # noqa: E402
from results_page import tiles_of  # noqa: E402
from servers import free_port, running_app  # noqa: E402
from test_engine import assert_unchanged, snapshot  # noqa: E402
from test_hostile_inputs import GOOD, api_explain  # noqa: E402
from test_security import DEFAULTS  # noqa: E402

import app  # noqa: E402
import models  # noqa: E402
from webapp import config, faithfulness, files, handlers, memory, state  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def served():
    """(the app's Blocks, its URL) on 127.0.0.1, in this process."""
    demo = app.build_app()
    with running_app(demo) as url:
        yield demo, url


@pytest.fixture(scope="module")
def server_url(served):
    return served[1]


def uploaded(url: str, path: Path = GOOD) -> dict:
    """Upload a file as the browser does; the image payload that names it."""
    files = {"files": (path.name, path.read_bytes(), "image/jpeg")}
    [where] = httpx.post(url + "gradio_api/upload", files=files, timeout=30).json()
    return {"path": where, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def message(error: BaseException) -> str:
    """The text a refused request came back with (gradio_client raises it in several forms)."""
    response = getattr(error, "response", None)
    return response.text if response is not None else str(error)


def explain_body(layer: str = "", image: object = None) -> dict:
    """The JSON of an /explain call: the security tests' default request, with this layer."""
    return {"data": [image, config.DEFAULT_MODEL, layer, *DEFAULTS[2:]]}


# ------------------------------------------------------------------------- request bodies


def test_large_request_bodies_are_refused_before_gradio_keeps_them(served):
    demo, server_url = served
    for route in ("gradio_api/call/explain", "gradio_api/queue/join"):
        for _ in range(4):
            body = {**explain_body(layer="x" * 2_000_000), "fn_index": 0, "session_hash": "big"}
            answer = httpx.post(server_url + route, json=body, timeout=30)
            assert answer.status_code == 413 and "larger than 64 KiB" in answer.json()["detail"]

    def chunks():
        for _ in range(40):
            yield b"x" * 50_000

    chunked = httpx.post(
        server_url + "gradio_api/call/explain",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert chunked.status_code in (400, 413)
    small = httpx.post(server_url + "gradio_api/call/explain", json=explain_body(layer="x" * 1000), timeout=30)
    assert small.status_code == 200  # a normal-sized body goes through (and is answered later)
    httpx.get(f"{server_url}gradio_api/call/explain/{small.json()['event_id']}", timeout=60)
    kept = [
        len(json.dumps(config["props"].get("value"), default=str))
        for session in demo.state_holder.session_data.values()
        for config in session.config_values.values()
        if "props" in config
    ]
    assert kept and max(kept) < config.MAX_BODY_BYTES  # the values Gradio keeps per session


def test_routes_that_cost_the_server_are_blocked(server_url):
    for path in (
        "gradio_api/deep_link?session_hash=abc",
        "gradio_api/file=https://example.com/x.png",
        "gradio_api/file=http://127.0.0.1:1/x",
        "gradio_api/file=//example.com/x",
    ):
        assert httpx.get(server_url + path, timeout=10).status_code == 404, path
    assert httpx.get(server_url, timeout=10).status_code == 200


# ------------------------------------------------------------------------- the queue


@pytest.fixture()
def held_engine(monkeypatch):
    """state.compute waits until released (or the visitor goes); started/stopped are recorded."""
    release, started, stopped = threading.Event(), threading.Event(), []
    real = state.compute

    def held(*args, progress=None, **kwargs):
        started.set()
        try:
            while not release.is_set():
                progress(0.5, "waiting")
                time.sleep(0.05)
        except BaseException as err:
            stopped.append((time.monotonic(), type(err).__name__))
            raise
        return real(*args, progress=progress, **kwargs)

    monkeypatch.setattr(state, "compute", held)
    yield release, started, stopped
    release.set()


def test_a_session_and_an_address_get_only_their_share_of_the_queue(held_engine, monkeypatch):
    from gradio_client import Client, handle_file

    release, started, _ = held_engine
    monkeypatch.setattr(config, "PER_ADDRESS", 3)
    with running_app(app.build_app()) as url:
        greedy = Client(url, verbose=False)
        jobs = [
            greedy.submit(image=handle_file(str(GOOD)), methods=["gradcam"], top_k=1, api_name="/explain")
            for _ in range(config.PER_SESSION)
        ]
        assert started.wait(30)
        extra = greedy.submit(image=handle_file(str(GOOD)), methods=["gradcam"], top_k=1, api_name="/explain")
        with pytest.raises(Exception) as refused:
            extra.result(timeout=30)
        assert "already have 2 requests" in message(refused.value)
        other = Client(url, verbose=False)  # another session from the same address: one more fits
        third = other.submit(image=handle_file(str(GOOD)), methods=["gradcam"], top_k=1, api_name="/explain")
        time.sleep(1)
        fourth = Client(url, verbose=False).submit(
            image=handle_file(str(GOOD)), methods=["gradcam"], top_k=1, api_name="/explain"
        )
        with pytest.raises(Exception) as crowded:
            fourth.result(timeout=30)
        assert "Too many requests from your network" in message(crowded.value)
        release.set()
        for job in [*jobs, third]:
            assert len(tiles_of(job.result(timeout=120)[0])) == 2  # every admitted one is answered


def test_a_run_stops_when_its_visitor_cancels_or_leaves(held_engine):
    from gradio_client import Client, handle_file

    release, started, stopped = held_engine
    with running_app(app.build_app()) as url:
        client = Client(url, verbose=False)
        job = client.submit(image=handle_file(str(GOOD)), methods=["gradcam"], top_k=1, api_name="/explain")
        assert started.wait(30)
        job.cancel()
        cancelled_at = time.monotonic()
        deadline = cancelled_at + 10
        while not stopped and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stopped and stopped[0][0] - cancelled_at < 2 and stopped[0][1] == "ClientGone"

        started.clear()
        event = httpx.post(url + "gradio_api/call/explain", json=explain_body(image=uploaded(url)), timeout=30)
        with httpx.stream("GET", f"{url}gradio_api/call/explain/{event.json()['event_id']}", timeout=30):
            assert started.wait(30)
        left_at = time.monotonic()  # the stream is closed: the page has gone
        while len(stopped) < 2 and time.monotonic() < left_at + 10:
            time.sleep(0.05)
        assert len(stopped) == 2 and stopped[1][0] - left_at < 2
        release.set()
        assert len(tiles_of(api_explain(Client(url, verbose=False), GOOD)[0])) == 2  # slots are free again


# ------------------------------------------------------------------------- time budget


def test_a_request_over_the_time_budget_is_refused_before_it_runs(monkeypatch):
    monkeypatch.setattr(config, "MAX_REQUEST_SECONDS", 2)
    calls = state.ENGINE_CALLS
    with pytest.raises(
        gr.Error,
        match=r"Score-CAM for 3 class\(es\).*could take up to about \d+ s.*at "
        r"most 2 s",
    ) as info:
        handlers.explain_image(str(GOOD), methods=["gradcam", "scorecam"], top_k=3)
    assert state.ENGINE_CALLS == calls  # refused from the estimate: the engine never ran
    assert "/" not in str(info.value)


def test_a_run_that_overstays_is_stopped_and_leaves_the_model_as_it_was(monkeypatch):
    classifier = models.load(config.DEFAULT_MODEL)
    before = snapshot(classifier.module)
    reference = handlers.explain_image(str(GOOD), methods=["gradcam"], top_k=1)[-1]
    monkeypatch.setattr(config, "MAX_REQUEST_SECONDS", 1)
    monkeypatch.setattr(state.PASS_TIMES, "seconds", lambda classifier: 1e-6)  # a wrong estimate
    started = time.monotonic()
    with pytest.raises(gr.Error, match=r"Stopped after \d+ s: a request may take at most 1 s"):
        handlers.explain_image(str(GOOD), methods=["scorecam"], top_k=1)
    assert time.monotonic() - started < 15  # Score-CAM alone takes far longer here
    monkeypatch.undo()
    assert_unchanged(classifier.module, before)
    again = handlers.explain_image(str(GOOD), methods=["gradcam"], top_k=1)[-1]
    key = next(iter(reference.tiles))
    assert (again.tiles[key].raw == reference.tiles[key].raw).all()


def test_the_faithfulness_panel_has_a_budget_and_gives_memory_back(monkeypatch):
    result = handlers.explain_image(str(GOOD), methods=["gradcam", "layercam"], top_k=2)[-1]
    released = []
    monkeypatch.setattr(memory, "release_memory", lambda: released.append(1))
    monkeypatch.setattr(config, "MAX_REQUEST_SECONDS", 1)
    with pytest.raises(gr.Error, match=r"Measuring 4 maps could take up to about"):
        faithfulness.measure_faithfulness(result)
    monkeypatch.setattr(config, "MAX_REQUEST_SECONDS", 600)
    figure, table, _ = faithfulness.measure_faithfulness(result)
    assert len(table.value["data"]) == 4 and released  # memory returned after the panel


# ------------------------------------------------------------------------- disk


def _folder_bytes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def test_temporary_files_stay_under_the_cap_and_rerenders_write_only_the_grid(monkeypatch):
    folder = files.scratch_folder()
    monkeypatch.setattr(folder, "max_bytes", folder.size() + 6 * 2**20)  # 6 MiB for this test's requests
    result = handlers.explain_image(str(GOOD), methods=["gradcam", "layercam", "gradcam++"], top_k=3)[-1]
    explained = _folder_bytes(result.shown.folder)
    for colormap in ("viridis", "magma", "jet", "inferno", "turbo"):
        handlers.rerender(result, colormap, 0.5, False)
        assert folder.size() <= folder.max_bytes
    redrawn = _folder_bytes(result.shown.folder)
    assert list(redrawn) == [result.shown.grid_name]  # the grid only: no zip, no tiles, no copy of the raw maps
    assert sum(redrawn.values()) < 0.3 * sum(explained.values())
    for _ in range(8):
        handlers.explain_image(str(GOOD), methods=["gradcam", "layercam", "gradcam++"], top_k=3)
        assert folder.size() <= folder.max_bytes


def test_uploads_alone_cannot_fill_the_disk_and_gradio_forgets_deleted_files(served, monkeypatch):
    demo, url = served
    folder = files.scratch_folder()
    examples = {path for block in demo.blocks.values() for path in getattr(block, "keep_in_cache", ())}
    assert examples and all(os.path.exists(path) for path in examples)  # Gradio's copies
    monkeypatch.setattr(folder, "max_bytes", 3 * 2**20)
    folder.trim()  # under the lowered cap, as every write keeps it (a trim follows each upload and drawing)
    for i in range(12):
        junk = {"files": (f"junk{i}.png", os.urandom(1_000_000), "image/png")}
        assert httpx.post(url + "gradio_api/upload", files=junk, timeout=30).status_code == 200
        assert folder.size() <= folder.max_bytes + 1_000_000  # the cap plus the upload in flight
    deadline = time.monotonic() + 10  # the trim after the last upload runs after its answer
    while time.monotonic() < deadline:
        tracked = [path for files in demo.temp_file_sets for path in files]
        if all(os.path.exists(path) for path in tracked):
            break
        time.sleep(0.1)
    assert tracked and all(os.path.exists(path) for path in tracked)  # no list of deleted files
    assert all(os.path.exists(path) for path in examples)  # the oldest files, but still needed


def test_the_server_removes_its_temporary_files_when_stopped(tmp_path):
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "EXPLAIN_APP_TEMP": str(tmp_path)}
    server = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(360):
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        files = {"files": ("cat.jpg", GOOD.read_bytes(), "image/jpeg")}
        assert httpx.post(url + "gradio_api/upload", files=files, timeout=30).status_code == 200
        assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) > 0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    assert list(tmp_path.iterdir()) == []  # nothing left behind
