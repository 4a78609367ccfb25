"""How much the app adds to the engine: the same request timed through explainers.explain alone and
through the running app's API (gradio_client, /explain), in one run, plus the app's start-up time.

    python bench/app_latency.py [--repeats 7] [--no-write]

Starts `python app.py` on a free 127.0.0.1 port (its start-up: launch until the page answers), then
for each request (the UI's default; a 6-method top-3 one) times, median of --repeats after a
warm-up: the engine alone in this process on the same preprocessed image, the request through the
API (upload, queue, maps drawn and saved, outputs fetched, as gradio_client does), and in-process
handlers.explain_image split into the engine and drawing/saving. Prints the ratios and replaces the
block between the app_latency markers in bench/RESULTS.md (unless --no-write).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: busy-waiting OpenMP is erratic on 2 cores
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse
import datetime
import functools
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT)]
import explainers  # noqa: E402
import models  # noqa: E402
from webapp import config, handlers, values  # noqa: E402

IMAGE = ROOT / "assets" / "cat_and_coffee.jpg"
REQUESTS = {  # name -> (methods, top_k)
    "default (Grad-CAM, Grad-CAM++, LayerCAM; top-2)": (["gradcam", "gradcam++", "layercam"], 2),
    "6 methods, top-3": (["gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "guided_gradcam"], 3),
}
START, END = "<!-- app_latency:start -->", "<!-- app_latency:end -->"


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """The median wall time of run() over `repeats` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        run()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, temp: Path) -> tuple[subprocess.Popen, float]:
    """`python app.py` and the seconds until its page answers."""
    import httpx

    env = {**os.environ, "EXPLAIN_APP_TEMP": str(temp)}
    begin = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while server.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return server, time.perf_counter() - begin
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("the app did not start")


def measure(repeats: int) -> tuple[float, list[dict]]:
    from gradio_client import Client, handle_file

    classifier = models.load(config.DEFAULT_MODEL)
    x = classifier.preprocess(values.load_image(str(IMAGE)))
    with tempfile.TemporaryDirectory() as temp:
        port = free_port()
        server, startup = start_server(port, Path(temp))
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=Path(temp) / "client")
            rows = []
            for name, (methods, top_k) in REQUESTS.items():
                request = {"methods": methods, "top_k": top_k}
                engine = median_seconds(
                    functools.partial(explainers.explain, classifier, x, layer=classifier.default_layer, **request),
                    repeats,
                )
                api = median_seconds(
                    functools.partial(client.predict, image=handle_file(str(IMAGE)), api_name="/explain", **request),
                    repeats,
                )
                handler = median_seconds(functools.partial(handlers.explain_image, str(IMAGE), **request), repeats)
                rows.append({"request": name, "engine_s": engine, "api_s": api, "handler_s": handler})
        finally:
            server.terminate()
            server.wait(60)
    return startup, rows


def table(startup: float, rows: list[dict], repeats: int) -> str:
    lines = [
        f"Measured {datetime.date.today()} on {os.cpu_count()} CPU cores (no GPU), "
        f"EfficientNet-Lite0, `{IMAGE.name}`, median of {repeats}. Start-up of `python app.py` "
        f"until the page answers: {startup:.1f} s.",
        "",
        "| request | engine alone | handlers.explain_image | through the API | API / engine |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['request']} | {row['engine_s'] * 1000:.0f} ms | "
            f"{row['handler_s'] * 1000:.0f} ms | {row['api_s'] * 1000:.0f} ms | "
            f"{row['api_s'] / row['engine_s']:.1f}x |"
        )
    return "\n".join(lines)


def write_results(text: str) -> None:
    results = HERE / "RESULTS.md"
    body = results.read_text()
    block = f"{START}\n{text}\n{END}"
    if START in body:
        body = body[: body.index(START)] + block + body[body.index(END) + len(END) :]
    else:
        body += f"\n## The app's overhead over the engine (bench/app_latency.py)\n\n{block}\n"
    results.write_text(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    startup, rows = measure(args.repeats)
    text = table(startup, rows, args.repeats)
    print(text)
    if not args.no_write:
        write_results(text)


if __name__ == "__main__":
    main()
