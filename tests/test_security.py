"""Security: no path from a request reads or writes outside where it should, no arbitrary model
downloads, bounded downloads folder, local-only binding unless asked, no checkpoint input.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import httpx  # noqa: E402
import pytest  # noqa: E402
import test_hostile_inputs as hostile  # noqa: E402
from gradio import utils as gradio_utils  # noqa: E402
from results_page import tiles_of  # noqa: E402
from test_hostile_inputs import GOOD, api_explain  # noqa: E402

import app  # noqa: E402
import models  # noqa: E402
from explainers import cli  # noqa: E402
from webapp import config, files, handlers, results_view  # noqa: E402

client, server_url = hostile.client, hostile.server_url  # the fixtures, shared
DEFAULTS = [config.DEFAULT_MODEL, None, ["gradcam"], 1, [], False, "jet", 0.5, False, None]


def raw_explain(url: str, image: dict, model: str = config.DEFAULT_MODEL) -> str:
    """POST /explain with a hand-made payload (no client-side upload); the event stream's text."""
    data = [image, model, *DEFAULTS[1:]]
    event = httpx.post(url + "gradio_api/call/explain", json={"data": data}, timeout=30)
    event.raise_for_status()
    return httpx.get(f"{url}gradio_api/call/explain/{event.json()['event_id']}", timeout=120).text


@pytest.fixture()
def private_image(tmp_path) -> Path:
    secret = tmp_path / "private.jpg"
    shutil.copy(GOOD, secret)
    return secret


def _refused(answer: str, private: Path) -> bool:
    """An error event that shows no image, no file content and no server path."""
    return (
        answer.startswith("event: error")
        and "computed at" not in answer
        and "root:" not in answer
        and "Traceback" not in answer
        and str(private.parent) not in answer
        and "/etc" not in answer
    )


def test_api_opens_only_uploads_and_examples_whatever_the_json_says(server_url, client, private_image):
    uploads = Path(gradio_utils.get_upload_folder())
    link = uploads / "attack-link" / "photo.jpg"  # a link planted in the upload folder
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(private_image)
    missing = private_image.with_name("missing.jpg")
    paths = [
        "/etc/passwd",
        str(private_image),
        str(missing),
        "../../../../etc/passwd",
        f"{private_image.parent}/../{private_image.parent.name}/private.jpg",
        f"{uploads}/../../../../{private_image}",
        str(link),
        str(uploads),
        "",
    ]
    answers = {}
    for path in paths:
        for payload in (
            {"path": path},
            {"path": path, "meta": {"_type": "gradio.FileData"}},
            path,
            {"path": path, "orig_name": "x.png", "url": "http://127.0.0.1/x"},
        ):
            answer = raw_explain(server_url, payload)
            assert _refused(answer, private_image), (payload, answer)
            answers[(path, str(type(payload)), "meta" in str(payload))] = answer
    # the same answer whether the file exists or not: no way to probe the server's files
    assert raw_explain(server_url, {"path": str(private_image)}) == raw_explain(server_url, {"path": str(missing)})
    for odd in (123, ["a"], True, {"url": None}):
        answer = raw_explain(server_url, odd)
        assert answer.startswith("event: error") and '"error": null' not in answer, (odd, answer)
    assert len(tiles_of(api_explain(client, GOOD)[0])) == 2  # the next good request is served
    on_upload = handlers.for_the_web(handlers.on_upload, frozenset(), handlers.upload_policy())
    for path in ("/etc/passwd", str(private_image), str(link)):  # the upload check, too
        with pytest.raises(gr.Error, match="not available on this server"):
            on_upload({"path": path, "meta": {"_type": "gradio.FileData"}})
    for path in ("/etc/passwd", str(private_image)):
        assert httpx.get(f"{server_url}gradio_api/file={path}").status_code == 403


def test_a_named_pipe_in_the_upload_folder_cannot_block_the_engine(server_url, client):
    uploads = Path(gradio_utils.get_upload_folder())
    fifo = uploads / "attack-fifo" / "pipe.png"
    fifo.parent.mkdir(parents=True, exist_ok=True)
    if not fifo.exists():
        os.mkfifo(fifo)
    started = time.monotonic()
    answer = raw_explain(server_url, {"path": str(fifo), "orig_name": "pipe.png"})
    assert time.monotonic() - started < 20 and answer.startswith("event: error"), answer
    assert len(tiles_of(api_explain(client, GOOD)[0])) == 2


def test_api_only_loads_listed_models(server_url, monkeypatch):
    loaded = []
    real = models.load
    monkeypatch.setattr(models, "load", lambda name, *a, **k: loaded.append(name) or real(name, *a, **k))
    for name in ("timm:vit_huge_patch14_clip_224", "squeezenet1_1", "../../etc/passwd"):
        from gradio_client import Client, handle_file

        with pytest.raises(Exception, match="Unknown model"):
            Client(server_url, verbose=False).predict(
                image=handle_file(str(GOOD)), model=name, methods=["gradcam"], api_name="/explain"
            )
    assert loaded == []
    listed = handlers.for_the_web(handlers.explain_image, frozenset({"efficientnet_lite0"}), handlers.upload_policy())
    for name in (["not", "a", "name"], 0, False, "EFFICIENTNET_LITE0"):
        with pytest.raises(gr.Error, match="Unknown model"):
            listed(str(GOOD), name)


def test_the_api_offers_no_file_input_but_the_image(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert sorted(endpoints) == ["/explain", "/sweep_layers"]  # the attack and dataset views are private
    for endpoint in endpoints.values():
        files = [p["parameter_name"] for p in endpoint["parameters"] if "FileData" in json.dumps(p.get("type", {}))]
        assert files == ["image"]  # no checkpoint or other file goes in through the web


def test_downloads_stay_in_their_folder_with_safe_names(monkeypatch, tmp_path):
    monkeypatch.setattr(files, "ARCHIVE_ROOT", tmp_path / "downloads")
    result = handlers.explain_image(str(GOOD), methods=["gradcam"], top_k=1)[-1]
    target = result.targets[0]
    result.labels[target] = "../../../evil/\\..\\x"
    result.model = "../../up"
    for _ in range(5):
        _, _, archive = results_view.present(result, "jet", 0.5, False)
        assert Path(archive).resolve().is_relative_to(tmp_path / "downloads")
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                assert not name.startswith("/") and ".." not in Path(name).parts, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]


def test_cli_writes_only_inside_out(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    names = ["...jpg", "..\\..\\evil.jpg", "$(touch pwned).jpg", "a b;c.jpg", "..jpg"]
    for name in names:
        shutil.copy(GOOD, source / name)
    out = tmp_path / "nested" / "out"
    code = cli.main([str(source), "--methods", "gradcam", "--top-k", "1", "--out", str(out), "--quiet"])
    assert code == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(source)]
    assert written and all(p.parent == out for p in written), written
    assert len({p.name for p in written if p.suffix == ".json"}) == len(names)
    assert not (tmp_path / "pwned").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in", "nested"]


def test_launch_binds_locally_with_limits_unless_told(monkeypatch):
    seen = {}

    class Demo:
        def launch(self, **kwargs):
            seen.update(kwargs)

    app.launch(Demo())
    assert seen["server_name"] == "127.0.0.1" and seen["share"] is False
    assert seen["max_file_size"] == config.MAX_FILE_BYTES and seen["show_error"] is False
    app.launch(Demo(), host="0.0.0.0", share=True)
    assert seen["server_name"] == "0.0.0.0" and seen["share"] is True
