"""How much the app adds to the engine: the same request timed through explainers.explain alone and
through the running app's API, in one run, beside Gradio's own floor (a trivial endpoint), plus
the app's start-up time.

    python bench/app_latency.py [--repeats 7] [--no-write]

The API is called two ways: over HTTP as Gradio documents it for any client (curl: upload the
image, POST /gradio_api/call/explain, read the answers as server-sent events; httpx here), and
through gradio_client, which looks for new messages every 50 ms (its own polling, whatever the
app). Starts `python app.py` on a free 127.0.0.1 port (its start-up: launch until the page
answers) and a trivial Gradio app (one image in, a line of HTML out, through the queue: what any
Gradio app costs per request: Gradio's floor), paused except during its own runs (an idle
Gradio app polls its queue every millisecond; the app does not: webapp/queue_wakeup.py). For
each request (the UI's default; a 6-method
top-3 one), --repeats rounds after a warm-up round, each taking in turn: the floor over HTTP;
the request over HTTP, until its first answer (the maps table with its pictures inside: what the
page shows) and until its last (the grid image and the zip added, both downloaded); the engine
alone in this process on the same preprocessed image. Then rounds of in-process
handlers.explain_stream to its first and last answer, and rounds of the same kind for
gradio_client (its floor, the request until its first answer, the engine alone): its reader
threads poll while they live, so they are not kept during the other rounds. Prints the medians
and their ratios to the engine and replaces the block between the app_latency markers in
bench/RESULTS.md (unless --no-write).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: busy-waiting OpenMP is erratic on 2 cores
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse
import datetime
import functools
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
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
SETTLE_S = 0.5  # the pause before each timed run (interleaved)


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


def job_first(submit: Callable[[], Any]) -> float:
    """Seconds until a gradio_client Job's first answer; its outputs are looked at every 5 ms
    (iterating the Job polls every millisecond under a lock its reader thread needs, which slows
    the answer it waits for). The job is then waited for, untimed."""
    begin = time.perf_counter()
    job = submit()
    while not job.outputs() and not job.done():
        time.sleep(0.005)
    first = time.perf_counter() - begin
    job.result()
    return first


class GradioHttp:
    """A Gradio app's API over plain HTTP, as its "Use via API" page documents it for curl: upload
    the image, POST the call, read the answers as server-sent events; files the answers name are
    downloaded as a client would. One keep-alive connection and one session for all its calls,
    as a browser tab and gradio_client have (a new session costs Gradio a copy of every
    component's settings: ~25 ms for this app's page)."""

    def __init__(self, url: str) -> None:
        import secrets

        import httpx

        self.http = httpx.Client(base_url=url, timeout=120)
        self.session = secrets.token_hex(8)
        self.parameters = {
            name: [(p["parameter_name"], p.get("parameter_default")) for p in endpoint["parameters"]]
            for name, endpoint in self.http.get("gradio_api/info").json()["named_endpoints"].items()
        }

    def answers(self, api_name: str, image: Path, **values: Any) -> Iterator[list]:
        """Each answer of one call of ``api_name`` (its outputs' values, in order) as it arrives;
        ``values`` by parameter name, the others at their defaults."""
        import json

        with image.open("rb") as f:
            path = self.http.post("gradio_api/upload", files={"files": (image.name, f)}).json()[0]
        given = {**values, "image": {"path": path, "meta": {"_type": "gradio.FileData"}}}
        data = [given.get(name, default) for name, default in self.parameters[api_name]]
        event_id = self.http.post(
            f"gradio_api/call{api_name}", json={"data": data, "session_hash": self.session}
        ).json()["event_id"]
        with self.http.stream("GET", f"gradio_api/call{api_name}/{event_id}") as events:
            kind = None
            for line in events.iter_lines():
                if line.startswith("event:"):
                    kind = line.removeprefix("event:").strip()
                elif line.startswith("data:") and kind in ("generating", "complete"):
                    yield json.loads(line.removeprefix("data:"))
                elif line.startswith("data:") and kind == "error":
                    raise RuntimeError(f"{api_name}: {line}")

    def download(self, outputs: list) -> None:
        """Fetch every file an answer names (the grid image, the zip), as gradio_client does."""
        for value in outputs:
            if isinstance(value, dict) and value.get("url"):
                self.http.get(value["url"]).raise_for_status()


def interleaved(runs: Sequence[Callable[[], dict[str, float]]], repeats: int) -> dict[str, float]:
    """Median seconds of each named time the runs give ({name: seconds}), the runs taken in
    turn `repeats` times after one warm-up round, so that a busy moment of the machine weighs
    on all of them. Each run starts after a pause of SETTLE_S: right after a request the server's
    work still weighs on the 2-core machine (an engine run straight after one took ~1.6x as
    long), and each run should start from the same quiet state. (The in-process handler runs in
    rounds of its own: it gives freed memory back to the system at its end, and an engine run
    after it would pay the page faults again.)"""
    times: dict[str, list[float]] = {}
    for round_ in range(repeats + 1):
        for run in runs:
            time.sleep(SETTLE_S)
            for name, value in run().items():
                if round_:
                    times.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in times.items()}


def timed(name: str, run: Callable[[], object]) -> Callable[[], dict[str, float]]:
    """A run for interleaved(): {name: the seconds of one run()}."""
    return lambda: {name: seconds(run)}


def awake_only_for(server: subprocess.Popen, run: Callable[[], dict[str, float]]) -> Callable[[], dict[str, float]]:
    """``run`` with ``server`` (the floor app) resumed for it and paused again after it: an idle
    Gradio app wakes a thousand times a second (its queue loop's 1 ms sleep), about 10 % of a
    core, which would slow whatever else is measured on the 2-core host."""

    def resumed() -> dict[str, float]:
        server.send_signal(signal.SIGCONT)
        time.sleep(SETTLE_S)
        try:
            return run()
        finally:
            server.send_signal(signal.SIGSTOP)

    return resumed


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
            echo_url, url = f"http://127.0.0.1:{echo_port}/", f"http://127.0.0.1:{port}/"
            http_floor, http = GradioHttp(echo_url), GradioHttp(url)
            echo.send_signal(signal.SIGSTOP)  # resumed for its own runs only (awake_only_for)
            rows = []
            for name, (methods, top_k) in REQUESTS.items():
                request: dict[str, Any] = {"methods": methods, "top_k": top_k}
                engine = functools.partial(explainers.explain, classifier, x, layer=classifier.default_layer, **request)

                def in_process(request: dict = request) -> dict[str, float]:
                    maps, answer = first_and_last(handlers.explain_stream(str(IMAGE), **request))
                    return {"handler_maps_s": maps, "handler_all_s": answer}

                def over_http(request: dict = request) -> dict[str, float]:
                    maps, answer = first_and_last(http.download(a) for a in http.answers("/explain", IMAGE, **request))
                    return {"http_maps_s": maps, "http_all_s": answer}

                floor = awake_only_for(echo, timed("http_floor_s", lambda: list(http_floor.answers("/echo", IMAGE))))
                row = {"request": name, **interleaved([floor, over_http, timed("engine_s", engine)], repeats)}
                rows.append({**row, **interleaved([in_process], repeats)})  # apart: see interleaved()
            # gradio_client apart, in rounds of its own: its reader threads poll while they live
            echo.send_signal(signal.SIGCONT)
            floor_client = Client(echo_url, verbose=False, download_files=Path(temp) / "c0")
            echo.send_signal(signal.SIGSTOP)
            client = Client(url, verbose=False, download_files=Path(temp) / "client")
            client_floor = functools.partial(floor_client.predict, handle_file(str(IMAGE)), api_name="/echo")
            for row, (methods, top_k) in zip(rows, REQUESTS.values()):
                request = {"methods": methods, "top_k": top_k}
                engine = functools.partial(explainers.explain, classifier, x, layer=classifier.default_layer, **request)
                submit = functools.partial(client.submit, image=handle_file(str(IMAGE)), api_name="/explain", **request)

                def with_client(submit: Callable[[], Any] = submit) -> dict[str, float]:
                    return {"client_maps_s": job_first(submit)}

                runs = [awake_only_for(echo, timed("client_floor_s", client_floor)), with_client]
                runs.append(timed("client_engine_s", engine))
                row.update(interleaved(runs, repeats))
            echo.send_signal(signal.SIGCONT)
            for each in (client, floor_client):
                each.close()
        finally:
            echo.send_signal(signal.SIGCONT)
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
        f"Gradio's floor, the API over HTTP, the engine alone; then rounds in-process; then rounds "
        f"of gradio_client's floor, the API through it, the engine alone). Start-up of `python app.py` "
        f"until the page answers: {startup:.1f} s.",
        "",
        "| request | engine alone | in-process: maps / all | Gradio's floor, HTTP | API over HTTP: maps "
        "| API over HTTP: all | **maps / engine** | all / engine |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        engine = row["engine_s"]
        lines.append(
            f"| {row['request']} | {ms(engine)} | {ms(row['handler_maps_s'])} / {ms(row['handler_all_s'])} | "
            f"{ms(row['http_floor_s'])} | {ms(row['http_maps_s'])} | {ms(row['http_all_s'])} | "
            f"**{row['http_maps_s'] / engine:.2f}x** | {row['http_all_s'] / engine:.1f}x |"
        )
    lines += [
        "",
        "| request | engine alone | Gradio's floor, gradio_client | API through gradio_client: maps "
        "| maps / engine | (maps − floor) / engine |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        engine, floor, maps = row["client_engine_s"], row["client_floor_s"], row["client_maps_s"]
        lines.append(
            f"| {row['request']} | {ms(engine)} | {ms(floor)} | {ms(maps)} | {maps / engine:.1f}x "
            f"| {(maps - floor) / engine:.1f}x |"
        )
    lines += [
        "",
        "Gradio's floor: a trivial Gradio app (one image in, a line of HTML out, through the queue), "
        "called the same way: what any Gradio app costs per request. API over HTTP: Gradio's "
        "documented HTTP API (upload, POST `/gradio_api/call/explain`, the answers as server-sent "
        "events) from httpx; maps = until the first answer, the maps table with its pictures inside "
        "it (what the page shows); all = until the last (the grid image and the zip added, both "
        "downloaded). gradio_client looks for new messages every 50 ms, whatever the app: its floor "
        "is that polling.",
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
