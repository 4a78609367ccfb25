"""How much the app adds to the engine: the same request timed through explainers.explain alone and
through the running app's API (gradio_client, /explain), in one run, beside Gradio's own floor (a
trivial endpoint through gradio_client), plus the app's start-up time.

    python bench/app_latency.py [--repeats 7] [--no-write]

Starts `python app.py` on a free 127.0.0.1 port (its start-up: launch until the page answers) and
a trivial Gradio app (one image in, a line of HTML out, through the queue: what any Gradio app
costs per request through gradio_client: Gradio's floor). For each request (the UI's default; a
6-method top-3 one), --repeats rounds after a warm-up round, each taking in turn: the engine
alone in this process on the same preprocessed image; the floor; the request through the API,
until its first answer (the maps table, what the page shows) and until its last (the grid image
and the zip added, both downloaded, as gradio_client.predict returns them); and in-process
handlers.explain_stream to its first and last answer. Prints the medians and their ratios to the
engine and replaces the block between the app_latency markers in bench/RESULTS.md (unless
--no-write).
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
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

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


def seconds(run: Callable[[], object]) -> float:
    """The wall time of one run()."""
    begin = time.perf_counter()
    run()
    return time.perf_counter() - begin


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ECHO_APP = """
import sys
import gradio as gr

with gr.Blocks(analytics_enabled=False) as demo:
    image, answer = gr.Image(type="filepath"), gr.HTML()
    gr.Button().click(lambda image: "<p>ok</p>", [image], [answer], api_name="echo")
demo.queue().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True)
"""


def start_server(command: list[str], port: int, temp: Path) -> tuple[subprocess.Popen, float]:
    """Start ``command`` (a Gradio app listening on ``port``) and the seconds until its page answers."""
    import httpx

    env = {**os.environ, "EXPLAIN_APP_TEMP": str(temp), "GRADIO_TEMP_DIR": str(temp / "gradio")}
    begin = time.perf_counter()
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while server.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return server, time.perf_counter() - begin
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{command} did not start")


def first_and_last(answers: Iterable[object]) -> tuple[float, float]:
    """Seconds until the first and until the last item of ``answers`` (a generator: started
    here)."""
    begin = time.perf_counter()
    first = None
    for _ in answers:
        first = first or time.perf_counter() - begin
    return first or 0.0, time.perf_counter() - begin


def job_first_and_last(submit: Callable[[], Any]) -> tuple[float, float]:
    """first_and_last for a gradio_client Job: its outputs are looked at every 5 ms (iterating
    the Job polls every millisecond under a lock its reader thread needs, which slows the
    answer it waits for); the last is job.result()."""
    begin = time.perf_counter()
    job = submit()
    while not job.outputs() and not job.done():
        time.sleep(0.005)
    first = time.perf_counter() - begin
    job.result()
    return first, time.perf_counter() - begin


def interleaved(runs: Sequence[Callable[[], dict[str, float]]], repeats: int) -> dict[str, float]:
    """Median seconds of each named time the runs give ({name: seconds}), the runs taken in
    turn `repeats` times after one warm-up round, so that a busy moment of the machine weighs
    on all of them. (The engine alone runs after the API call, not right after the in-process
    handler: that gives freed memory back to the system, and the next engine run would pay the
    page faults the app's own engine runs pay.)"""
    times: dict[str, list[float]] = {}
    for round_ in range(repeats + 1):
        for run in runs:
            for name, value in run().items():
                if round_:
                    times.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in times.items()}


def timed(name: str, run: Callable[[], object]) -> Callable[[], dict[str, float]]:
    """A run for interleaved(): {name: the seconds of one run()}."""
    return lambda: {name: seconds(run)}


def measure(repeats: int) -> tuple[float, list[dict]]:
    """(start-up seconds, one row of medians per request)."""
    from gradio_client import Client, handle_file

    classifier = models.load(config.DEFAULT_MODEL)
    x = classifier.preprocess(values.load_image(str(IMAGE)))
    with tempfile.TemporaryDirectory() as temp:
        port, echo_port = free_port(), free_port()
        server, startup = start_server([sys.executable, "app.py", "--port", str(port)], port, Path(temp) / "app")
        echo, _ = start_server([sys.executable, "-c", ECHO_APP, str(echo_port)], echo_port, Path(temp) / "echo")
        try:
            floor_client = Client(f"http://127.0.0.1:{echo_port}/", verbose=False, download_files=Path(temp) / "c0")
            floor = functools.partial(floor_client.predict, handle_file(str(IMAGE)), api_name="/echo")
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=Path(temp) / "client")
            rows = []
            for name, (methods, top_k) in REQUESTS.items():
                request: dict[str, Any] = {"methods": methods, "top_k": top_k}
                engine = functools.partial(explainers.explain, classifier, x, layer=classifier.default_layer, **request)
                api = functools.partial(client.submit, image=handle_file(str(IMAGE)), api_name="/explain", **request)

                def in_process(request: dict = request) -> dict[str, float]:
                    maps, answer = first_and_last(handlers.explain_stream(str(IMAGE), **request))
                    return {"handler_maps_s": maps, "handler_all_s": answer}

                def through_api(api: Callable[[], Any] = api) -> dict[str, float]:
                    maps, answer = job_first_and_last(api)
                    return {"api_maps_s": maps, "api_all_s": answer}

                medians = interleaved(
                    [timed("floor_s", floor), through_api, timed("engine_s", engine), in_process], repeats
                )
                rows.append({"request": name, **medians})
        finally:
            for process in (server, echo):
                process.terminate()
                process.wait(60)
    return startup, rows


def table(startup: float, rows: list[dict], repeats: int) -> str:
    """The results as markdown: one row per request, the ratios to the engine alone."""

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.0f} ms"

    lines = [
        f"Measured {datetime.date.today()} on {os.cpu_count()} CPU cores (no GPU), "
        f"EfficientNet-Lite0, `{IMAGE.name}`, medians of {repeats} rounds in one run (each round: "
        f"Gradio's floor, the API, the engine alone, in-process). Start-up of `python app.py` "
        f"until the page answers: {startup:.1f} s.",
        "",
        "| request | engine alone | Gradio's floor | in-process: maps / all | API: maps | API: all "
        "| maps / engine | all / engine | (maps − floor) / engine |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        engine, floor = row["engine_s"], row["floor_s"]
        lines.append(
            f"| {row['request']} | {ms(engine)} | {ms(floor)} | {ms(row['handler_maps_s'])} / "
            f"{ms(row['handler_all_s'])} | {ms(row['api_maps_s'])} | {ms(row['api_all_s'])} | "
            f"{row['api_maps_s'] / engine:.1f}x | {row['api_all_s'] / engine:.1f}x | "
            f"{(row['api_maps_s'] - floor) / engine:.1f}x |"
        )
    lines += [
        "",
        "Gradio's floor: a trivial Gradio app (one image in, a line of HTML out, through the queue) "
        "called through gradio_client: what any Gradio app costs per request. API: maps = until "
        "the first answer (the maps table, what the page shows); all = until the last (the grid "
        "image and the zip added, both downloaded by gradio_client, as `predict` returns them).",
    ]
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
