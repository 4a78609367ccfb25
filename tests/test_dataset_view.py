"""The "Diagnose a dataset" view's handlers (webapp/dataset_run.py): a zip built here goes in, the
page's summary, the report frame and the results' zip come out.

On the channel network of test_diagnose (its answers are known: the class is the brightest colour
channel) the misclassified images shown are exactly the mislabelled ones; on ImageNet photos
(skipped when /work/shared/data/imagenet-sample is absent) they are exactly the images the real
model gets wrong. Hostile zips are refused with messages that name no server path, and every run
leaves only its results' zip in the scratch folder.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
import torch
from test_diagnose import COLOURS, channel_model, square

import models
from explainers.diagnose import read_dataset, unpack_dataset
from webapp import dataset_example, dataset_report, dataset_run, files, handlers
from webapp.dataset_visitors import BUSY, VisitorJobs, visitor_keys

SAMPLE = Path("/work/shared/data/imagenet-sample")


@pytest.fixture(autouse=True)
def scratch(monkeypatch, tmp_path):
    """This process's scratch folder, Gradio's upload folder inside it, and fresh visitor jobs."""
    folder = files.scratch_folder()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder.gradio))
    monkeypatch.setattr(dataset_run, "JOBS", VisitorJobs(lapse_s=60, kept_archives=4))
    monkeypatch.setattr(files, "ARCHIVE_ROOT", None)
    return folder


@pytest.fixture()
def channels(monkeypatch):
    """The known model stands for every model name the handlers load."""
    model = channel_model()
    monkeypatch.setattr(dataset_run.models, "load", lambda name, device=None: model)
    return model


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def upload(scratch, members: dict[str, bytes], name: str = "set.zip") -> dict:
    """A zip of ``members`` in Gradio's upload folder, as gr.File sends it (preprocess=False)."""
    folder = scratch.gradio / f"upload-{len(list(scratch.gradio.glob('upload-*')))}"
    folder.mkdir()
    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as packed:
        for member, data in members.items():
            packed.writestr(member, data)
    return {"path": str(path), "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def colour_set() -> dict[str, bytes]:
    """Two squares per colour in class folders, and a red square filed under green."""
    members = {f"{c}/{c}{n}.png": png(square(i)) for i, c in enumerate(COLOURS) for n in range(2)}
    members["green/mislabelled.png"] = png(square(0))
    return members


def run(archive, **options):
    options.setdefault("methods", ["gradcam"])
    return dataset_run.diagnose_dataset(archive, "channels", progress=lambda *a, **k: None, **options)


def shown_misclassified(frame: str) -> list[str]:
    """The files of the report's misclassified table, from the frame's srcdoc."""
    srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    if "<h2>Misclassified images</h2><p>None.</p>" in srcdoc:
        return []
    table = srcdoc.split("<table class=sortable id=misclassified>")[1].split("</table>")[0]
    return [html.unescape(cell) for cell in re.findall(r"<tr><td[^>]*>[^<]*</td><td data-value=\"([^\"]*)\"", table)]


def jobs_left(scratch) -> list[Path]:
    return list((scratch.root / "datasets").glob("job-*")) if (scratch.root / "datasets").exists() else []


def test_the_report_shows_the_models_mistakes_and_only_the_zip_is_left(scratch, channels):
    status, summary, frame, results = run(upload(scratch, colour_set()))
    assert status == "Diagnosed 7 images with gradcam on channels."
    assert "top-1 accuracy <b>85.7 %</b>" in summary and "<b>1</b> misclassified" in summary
    assert "<td>1: green</td><td class=num>3</td><td class=num>2</td><td class=num>66.7 %</td>" in summary
    assert "<td>green</td><td>red</td><td class=num>1</td>" in summary  # the confusion
    assert shown_misclassified(frame) == ["green/mislabelled.png"]
    assert "sandbox='allow-scripts'" in frame and "allow-same-origin" not in frame
    srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    assert 'src="overlays/' not in srcdoc and "data:image/jpeg;base64," in srcdoc
    assert str(scratch.root) not in frame + summary and "/tmp" not in frame + summary
    with zipfile.ZipFile(results) as packed:
        names = packed.namelist()
        packed_summary = json.loads(packed.read("summary.json"))
    assert "report.html" in names and any(n.startswith("maps/") for n in names)
    assert [m["file"] for m in packed_summary["misclassified"]] == ["green/mislabelled.png"]
    assert set(packed_summary["misclassified"][0]["maps"]) == {"0", "1"}  # its predicted and true class
    assert Path(results).is_relative_to(scratch.downloads)
    assert jobs_left(scratch) == []  # the unpacked images and the run's folder are gone


def test_a_visitors_new_results_replace_the_previous_zip(scratch, channels):
    request = SimpleNamespace(session_hash="s1", client=SimpleNamespace(host="10.0.0.1"))
    first = run(upload(scratch, colour_set()), request=request)[3]
    second = run(upload(scratch, colour_set()), request=request)[3]
    assert Path(second).is_file() and not Path(first).exists()


def test_a_csv_of_labels_and_boxes_gives_localisation_scores(scratch, channels):
    members = {f"img{i}.png": png(square(i % 3)) for i in range(6)}
    members["labels.csv"] = "file,label\n" + "".join(f"img{i}.png,{COLOURS[i % 3]}\n" for i in range(6))
    members["boxes.csv"] = "file,x0,y0,x1,y1\n" + "".join(f"img{i}.png,14,10,30,26\n" for i in range(6))
    _, summary, frame, results = run(upload(scratch, members))
    assert "top-1 accuracy <b>100.0 %</b>" in summary and "None: every image is right." in summary
    with zipfile.ZipFile(results) as packed:
        localisation = json.loads(packed.read("summary.json"))["localisation"]
    assert localisation["images_with_boxes"] == 6 and localisation["per_method"]["gradcam"]["box_accuracy"] == 1.0


def test_a_zip_of_one_class_folder_is_read_as_that_class(scratch, channels):
    status, summary, _, _ = run(upload(scratch, {"red/a.png": png(square(0)), "red/b.png": png(square(1))}))
    assert (
        status.startswith("Diagnosed 2 images") and "<td>0: red</td><td class=num>2</td><td class=num>1</td>" in summary
    )


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="ImageNet sample photos are not on this machine")
def test_on_imagenet_photos_the_misclassified_are_the_models_mistakes(scratch):
    classifier = models.load("efficientnet_lite0")
    photos = sorted(SAMPLE.glob("*.JPEG"))[::12][:20]
    wrong = []
    for photo in photos:
        with torch.no_grad():
            logits = classifier.module(classifier.preprocess(models.open_image(photo)).to(classifier.device))
        if int(logits.argmax()) != models.imagenet_wnids().index(photo.name.split("_")[0]):
            wrong.append(photo.name)
    assert 0 < len(wrong) < len(photos)  # a test of both sides
    archive = upload(scratch, {photo.name: photo.read_bytes() for photo in photos})
    _, summary, frame, _ = dataset_run.diagnose_dataset(
        archive, "efficientnet_lite0", ["gradcam"], progress=lambda *a, **k: None
    )
    assert sorted(shown_misclassified(frame)) == sorted(wrong)
    assert f"<b>{len(wrong)}</b> misclassified" in summary


def refusal(archive, **options) -> str:
    with pytest.raises(gr.Error) as caught:
        run(archive, **options)
    return caught.value.message


def hostile(name: str, data: bytes) -> bytes:
    """A zip with one member named as given (zipfile would clean a name like "../x")."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as packed:
        packed.writestr(zipfile.ZipInfo("red/ok.png"), png(square(0)))
        info = zipfile.ZipInfo("placeholder")
        info.filename = name
        packed.writestr(info, data)
    return buffer.getvalue()


def raw_upload(scratch, data: bytes, name: str = "set.zip") -> dict:
    folder = scratch.gradio / f"raw-{len(list(scratch.gradio.glob('raw-*')))}"
    folder.mkdir()
    (folder / name).write_bytes(data)
    return {"path": str(folder / name), "orig_name": name}


def test_hostile_and_unusable_zips_are_refused_with_messages(scratch, channels, monkeypatch, tmp_path):
    outside = tmp_path / "elsewhere.zip"
    outside.write_bytes(b"PK")
    cases = {
        "upload a zip": run_args(None),
        "not available on this server": run_args({"path": str(outside)}),
        "not available on this server ": run_args({"path": str(scratch.gradio / ".." / ".." / "etc.zip")}),
        "not a readable zip archive": run_args(raw_upload(scratch, b"this is not a zip at all")),
        "outside its folder": run_args(raw_upload(scratch, hostile("../../evil.png", png(square(0))))),
        "outside its folder ": run_args(raw_upload(scratch, hostile("/etc/evil.png", png(square(0))))),
        "could not be unpacked: File name too long": run_args(
            upload(scratch, {f"red/{'x' * 300}.png": png(square(0)), "red/ok.png": png(square(0))})
        ),
        "holds no images": run_args(upload(scratch, {"notes.txt": b"hello", "run.sh": b"rm -rf /"})),
        "name no class of the model": run_args(upload(scratch, {"0001.png": png(square(0))})),
        f"holds {dataset_run.MAX_FILES + 1} files; the limit is {dataset_run.MAX_FILES}": run_args(
            upload(scratch, {f"red/{n}.png": b"x" for n in range(dataset_run.MAX_FILES + 1)})
        ),
        f"limit here is {dataset_run.MAX_IMAGES}": run_args(
            upload(scratch, {f"{COLOURS[n % 2]}/{n}.png": b"x" for n in range(dataset_run.MAX_IMAGES + 1)})
        ),
        "None of the images could be read": run_args(upload(scratch, {"red/fake.png": b"not a picture"})),
        "CAM-family methods only": run_args(upload(scratch, colour_set()), methods=["rise"]),
        f"at most {dataset_run.MAX_METHODS} methods": run_args(
            upload(scratch, colour_set()), methods=list(dataset_run.CAM_METHODS)
        ),
        "threshold must be": run_args(upload(scratch, colour_set()), threshold=1.5),
    }
    for expected, (archive, options) in cases.items():
        message = refusal(archive, **options)
        assert expected.strip() in message, (expected, message)
        assert str(scratch.root) not in message and "Traceback" not in message and str(tmp_path) not in message
    assert "Use one folder per class" in refusal(upload(scratch, {"0001.png": png(square(0))}))
    assert "is not an image this app can read" in refusal(upload(scratch, {"red/fake.png": b"not a picture"}))
    assert jobs_left(scratch) == []
    assert not list(scratch.root.rglob("evil.png")) and not (scratch.root.parent / "evil.png").exists()


def run_args(archive, **options):
    return archive, options


def test_bombs_and_oversized_uploads_stop_at_the_limits(scratch, channels, monkeypatch):
    monkeypatch.setattr(dataset_run, "MAX_UNPACKED_BYTES", 2**20)
    bomb = {"red/ok.png": png(square(0)), "red/bomb.png": bytes(8 * 2**20)}  # 8 MB of zeros: 8 KB zipped
    archive = upload(scratch, bomb)
    assert Path(archive["path"]).stat().st_size < 64 * 1024
    assert "larger than the limit once unpacked" in refusal(archive)
    monkeypatch.setattr(dataset_run, "MAX_ZIP_BYTES", 1024)
    assert "The zip is larger than" in refusal(upload(scratch, colour_set()))
    assert jobs_left(scratch) == []


def test_an_unreadable_image_among_good_ones_is_listed(scratch, channels):
    members = colour_set() | {"red/fake.png": b"not a picture"}
    _, summary, frame, _ = run(upload(scratch, members))
    assert "1 image(s) could not be read and are left out: “red/fake.png” is not an image" in summary
    assert "<b>7</b> images" in summary


def test_one_job_per_visitor_and_stop(scratch, channels):
    request = SimpleNamespace(session_hash="s1", client=SimpleNamespace(host="10.0.0.1"))
    same_address = SimpleNamespace(session_hash="s2", client=SimpleNamespace(host="10.0.0.1"))
    dataset_run.claim_job(request)
    with pytest.raises(gr.Error, match="already have a dataset job"):
        dataset_run.claim_job(same_address)
    dataset_run.stop_job(request)  # pressed while the job waits: it stops when its turn comes
    assert run(upload(scratch, colour_set()), request=request)[0] == "Stopped before it started."
    dataset_run.claim_job(request)
    assert "upload a zip" in refusal(None, request=request)  # refused: the claim is released too
    dataset_run.claim_job(same_address)

    def press_stop_after_the_first_batch(fraction, desc="", **_):
        if isinstance(fraction, tuple) and fraction[0] >= dataset_run.BATCH_SIZE:
            dataset_run.stop_job(same_address)

    status, summary, frame, results = dataset_run.diagnose_dataset(
        upload(scratch, colour_set()),
        "channels",
        ["gradcam"],
        request=same_address,
        progress=press_stop_after_the_first_batch,
    )
    assert f"Stopped at your request: the report covers the first {dataset_run.BATCH_SIZE} of 7 images." in summary
    assert f"<b>{dataset_run.BATCH_SIZE}</b> images" in summary and Path(results).is_file()
    assert "unfinished" in html.unescape(frame)
    assert jobs_left(scratch) == []


def test_the_server_runs_one_dataset_at_a_time_within_its_time(scratch, channels, monkeypatch):
    monkeypatch.setattr(dataset_run, "SLOT_WAIT_S", 0.01)
    with dataset_run.SERVER_SLOT:
        assert "still finishing another dataset" in refusal(upload(scratch, colour_set()))
    monkeypatch.setattr(handlers, "estimated_seconds", lambda *a: 10.0)  # 10 s an image: 70 s
    monkeypatch.setattr(dataset_run, "MAX_SECONDS", 60)
    assert "7 images with gradcam on channels could take up to about 70 s" in refusal(upload(scratch, colour_set()))
    monkeypatch.setattr(handlers, "estimated_seconds", lambda *a: 0.0)
    monkeypatch.setattr(dataset_run.budget.Deadline, "elapsed", lambda self: 61.0)
    summary = html.unescape(run(upload(scratch, colour_set()))[1])
    assert (
        f"Stopped after 60 s, this server's limit for a dataset: the report covers the first {dataset_run.BATCH_SIZE}"
        in summary
    )


def test_the_report_keeps_to_its_picture_budget(scratch, channels, monkeypatch):
    monkeypatch.setattr(dataset_run, "REPORT_PICTURE_BYTES", 0)
    _, summary, frame, _ = run(upload(scratch, colour_set()))
    assert "pictures are not shown in the page (its size limit): they are in the download." in summary
    assert "data:image/jpeg" not in frame


def test_the_web_handler_refuses_unlisted_models(scratch, channels):
    web = handlers.for_the_web(dataset_run.diagnose_dataset, frozenset({"channels"}), handlers.upload_policy())
    with pytest.raises(gr.Error, match="Unknown model"):
        web(upload(scratch, colour_set()), "resnet50_from_a_url", ["gradcam"], 0.15, None, lambda *a, **k: None)


def test_visitor_keys_and_claims_that_lapse():
    request = SimpleNamespace(session_hash="abc", client=SimpleNamespace(host="192.0.2.7"))
    assert visitor_keys(request) == ("session:abc", "address:192.0.2.7") and visitor_keys(None) == ()
    now = [0.0]
    jobs = VisitorJobs(lapse_s=10, kept_archives=2, clock=lambda: now[0])
    jobs.claim(visitor_keys(request))
    with pytest.raises(ValueError, match=re.escape(BUSY)):
        jobs.claim(["address:192.0.2.7"])
    now[0] = 11.0  # never started: it lapses
    started = jobs.start(visitor_keys(request))
    now[0] = 100.0  # a running job does not lapse
    with pytest.raises(ValueError):
        jobs.claim(["session:abc"])
    jobs.release(started)
    jobs.claim(["session:abc"])
    assert jobs.start(()).keys == ()  # a Python caller is not limited


def test_the_example_dataset_is_made_of_the_apps_photos(tmp_path):
    members = dataset_example.example_members()
    assert len(members) == 10 and {name.split("/")[0] for name in members} == set(dataset_example.EXAMPLE_CLASSES)
    path = dataset_example.example_zip()
    assert path == dataset_example.example_zip() and dataset_run.upload_policy().allows(str(path))
    root = unpack_dataset(path, tmp_path / "example-check")
    samples = read_dataset(root, models.imagenet_labels())
    labels = models.imagenet_labels()
    assert sorted({labels[s.label] for s in samples}) == ["espresso", "military uniform", "missile", "tabby"]


def test_the_summary_escapes_names_from_the_zip():
    summary = {
        "model": "m<script>",
        "layer": "l",
        "methods": ["gradcam"],
        "images": 1,
        "accuracy": 0.0,
        "failed": [{"file": "x", "error": "“<img src=x onerror=alert(1)>.png” is not an image"}],
        "misclassified": [{}],
        "per_class": [{"class": 0, "name": "<b>a</b>", "images": 1, "correct": 0, "accuracy": 0.0}],
        "confusions": [],
    }
    shown = dataset_report.summary_html(summary)
    assert "<script>" not in shown and "<img" not in shown and "<b>a</b>" not in shown
    frame = dataset_report.report_frame('<p title="x">"quoted" & <b>bold</b></p>')
    assert html.unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1)) == '<p title="x">"quoted" & <b>bold</b></p>'


def test_only_uploads_may_be_diagnosed(scratch, tmp_path):
    policy = dataset_run.upload_policy()
    inside = scratch.gradio / "up" / "a.zip"
    inside.parent.mkdir(exist_ok=True)
    inside.write_bytes(b"PK")
    assert dataset_run.checked_archive({"path": str(inside)}, policy) == inside.resolve()
    assert dataset_run.checked_archive(str(inside), policy) == inside.resolve()
    link = scratch.gradio / "up" / "link.zip"
    link.unlink(missing_ok=True)
    os.symlink("/etc/hostname", link)
    for payload in ({"path": str(link)}, {"path": "/etc/passwd"}, {"path": 3}, {"path": "a\0b"}, 17):
        with pytest.raises(ValueError, match="not available on this server"):
            dataset_run.checked_archive(payload, policy)
