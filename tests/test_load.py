"""Load: 8 gradio_client users at once against the app in its own process.

Every answer must equal the engine's answer for the same request run alone (no maps mixed between
users), none may be lost, latency p50/p95 is reported (artifacts/load_test.json) and the server's
memory must not grow from the first 20 requests to the last 20.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Self

import numpy as np
import pytest
from results_page import tiles_of  # noqa: E402
from servers import free_port, running_app

import app  # noqa: E402
import explainers
import models
from explainers import export  # noqa: E402
from webapp import state, values  # noqa: E402

psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[1]
IMAGES = sorted((ROOT / "assets").glob("*.jpg"))
MODELS = ["efficientnet_lite0", "efficientnet_lite1"]
FAST = [["gradcam"], ["layercam", "gradcam++"], ["eigencam"], ["guided_gradcam"], ["gradient"], ["gradcam", "layercam"]]
USERS = 8
REQUESTS = 96
WINDOW = 20  # requests compared for memory growth (first vs last)
MAX_GROWTH_MB = 150
DEADLINE_S = 420


@dataclass(frozen=True)
class Request:
    image: Path
    model: str
    methods: tuple[str, ...]
    top_k: int
    classes: tuple[str, ...] = ()  # extra classes by name, e.g. ("espresso",)
    counterfactual: bool = False


def plan(seed: int = 0) -> list[Request]:
    """A reproducible mix of images, models, fast methods and top-k; every 16th is Ablation-CAM."""
    rng = random.Random(seed)
    return [
        Request(
            rng.choice(IMAGES),
            rng.choice(MODELS),
            ("ablationcam",) if i % 16 == 15 else tuple(rng.choice(FAST)),
            rng.randint(1, 2),
        )
        for i in range(REQUESTS)
    ]


@contextmanager
def app_server(log: Path, env_extra: dict[str, str] | None = None) -> Iterator[tuple[str, psutil.Process]]:
    """`python app.py` in its own process (its memory is measured alone) on a free local port,
    with env_extra in its environment: yields (url, process); prints the tail of its log after."""
    import httpx

    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_NAME": "127.0.0.1", **(env_extra or {})}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("the app did not start")
    try:
        yield url, psutil.Process(process.pid)
    finally:
        print(log.read_text()[-4000:])
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app in its own process; its log is printed when a test fails."""
    with app_server(tmp_path_factory.mktemp("server") / "app.log") as started:
        yield started


class Sampler:
    """Samples measure() every `period` seconds in the background, labelled with the number of
    finished requests."""

    def __init__(self, measure: Callable[[], int], finished: Callable[[], int], period: float = 0.1) -> None:
        self.measure, self.finished, self.period, self.samples = measure, finished, period, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.samples.append((self.finished(), self.measure()))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Memory(Sampler):
    """Samples the server's RSS in the background, labelled with the number of finished requests."""

    def __init__(self, process: psutil.Process, finished: Callable[[], int]) -> None:
        super().__init__(lambda: process.memory_info().rss, finished)

    def typical_mb(self, low: int, high: int) -> float:
        """The median RSS (MB) sampled while between low and high requests had finished."""
        return float(np.median([rss for done, rss in self.samples if low <= done <= high])) / 2**20


def call(client, request: Request, timeout: float | None = None) -> tuple[dict, dict]:
    """One /explain request (an error after timeout seconds): (predictions.json, maps.npz arrays)
    from its download zip."""
    from gradio_client import handle_file

    job = client.submit(
        image=handle_file(str(request.image)),
        model=request.model,
        methods=list(request.methods),
        top_k=request.top_k,
        classes=list(request.classes),
        counterfactual=request.counterfactual,
        api_name="/explain",
    )
    archive = job.result(timeout=timeout)[2]
    stem = export.stem_of(Path(request.image).name)
    with zipfile.ZipFile(archive) as zf:
        info = json.loads(zf.read(f"{stem}.json"))
        with np.load(io.BytesIO(zf.read(f"{stem}_maps.npz"))) as npz:
            return info, dict(npz)


@lru_cache(maxsize=128)
def explain_alone(request: Request) -> explainers.Explanation:
    """explainers.explain run here, alone, on the request's preprocessed image (classes named
    in the request are found with Classifier.search_classes, first match)."""
    classifier = models.load(request.model, "cpu")
    x = classifier.preprocess(values.load_image(str(request.image)))
    targets = [classifier.search_classes(name, limit=1)[0][0] for name in request.classes]
    return explainers.explain(
        classifier,
        x,
        list(request.methods),
        top_k=request.top_k,
        targets=targets or None,
        layer=classifier.default_layer,
        counterfactual=request.counterfactual,
    )


def check_alone(request: Request, info: dict, maps: dict) -> None:
    """The answer equals the engine's answer to the same request alone."""
    alone = explain_alone(request)
    assert info["model"] == request.model and info["methods"] == list(request.methods)
    assert info["counterfactual"] == request.counterfactual
    assert [t["class"] for t in info["targets"]] == alone.targets[0]
    for m in alone.maps:
        key = export.map_key(m)
        np.testing.assert_allclose(maps[key + "/map"], m.map, atol=2e-3, err_msg=key)
        np.testing.assert_allclose(
            maps[key + "/raw"], m.raw, rtol=1e-3, atol=1e-3 * float(np.abs(m.raw).max()), err_msg=key
        )


def warm_up(client, fast: Iterable[str]) -> None:
    """Load both models and run every method once (the fast ones together, then Ablation-CAM)."""
    for name in MODELS:
        call(client, Request(IMAGES[0], name, tuple(sorted(fast)), 1))
        call(client, Request(IMAGES[0], name, ("ablationcam",), 1))


def test_eight_users_get_their_own_answers_fast_and_without_leaks(server):
    from gradio_client import Client

    url, process = server
    requests = plan()
    warm_up(Client(url, verbose=False), {m for ms in FAST for m in ms})
    clients = [Client(url, verbose=False) for _ in range(USERS)]
    answers: list = [None] * len(requests)
    latencies: list[float] = [0.0] * len(requests)

    def user(number: int) -> None:
        for index in range(number, len(requests), USERS):
            if time.time() > started + DEADLINE_S:
                return
            begin = time.perf_counter()
            answers[index] = call(clients[number], requests[index])
            latencies[index] = time.perf_counter() - begin

    started = time.time()
    finished = lambda: sum(answer is not None for answer in answers)  # noqa: E731
    with Memory(process, finished) as memory, ThreadPoolExecutor(USERS) as pool:
        for future in [pool.submit(user, n) for n in range(USERS)]:
            future.result()
    wall = time.time() - started

    assert all(answer is not None for answer in answers), "requests were lost or timed out"
    for request, (info, maps) in zip(requests, answers):
        check_alone(request, info, maps)
    p50, p95 = np.percentile(latencies, [50, 95])
    first = memory.typical_mb(0, WINDOW)
    last = memory.typical_mb(len(requests) - WINDOW, len(requests))
    growth = last - first
    report = {
        "users": USERS,
        "requests": len(requests),
        "wall_s": round(wall, 1),
        "throughput_per_s": round(len(requests) / wall, 2),
        "p50_s": round(float(p50), 3),
        "p95_s": round(float(p95), 3),
        "max_s": round(max(latencies), 3),
        "rss_first_window_mb": round(first),
        "rss_last_window_mb": round(last),
        "rss_growth_mb": round(growth, 1),
        "models": MODELS,
        "cpu_count": os.cpu_count(),
    }
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "load_test.json").write_text(json.dumps(report, indent=2) + "\n")
    print("\nload test:", json.dumps(report))
    assert growth < MAX_GROWTH_MB, report


def test_requests_queue_two_engine_runs_at_a_time(monkeypatch):
    """The engine runs behind Gradio's queue: one "engine" group, 2 at a time, 32 waiting."""
    from gradio_client import Client, handle_file

    demo = app.build_app()
    explain = next(fn for fn in demo.fns.values() if fn.api_name == "explain")
    assert explain.queue and explain.concurrency_id == "engine"
    assert demo._queue.default_concurrency_limit == 2 and demo._queue.max_size == 32
    active, peak, lock = [0], [0], threading.Lock()
    real = state.compute

    def counted(*args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.3)  # long enough for the queue to show how many run together
            return real(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(state, "compute", counted)
    with running_app(demo) as url:

        def one(_: int) -> int:
            return len(
                tiles_of(
                    Client(url, verbose=False).predict(
                        image=handle_file(str(IMAGES[0])), methods=["gradcam"], top_k=1, api_name="/explain"
                    )[0]
                )
            )

        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(one, range(6))) == [2] * 6
    assert peak[0] == 2
