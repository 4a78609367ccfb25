"""webapp.uploads: the one reader of a Gradio file payload (path, URL, display name) and the one
check of its path against the upload policy, as the image input and the dataset zip use them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gradio.data_classes import FileData

from webapp import dataset_run, uploads, values
from webapp.errors import UserError

REFUSAL = "Not here."


@pytest.fixture()
def upload(tmp_path) -> tuple[uploads.UploadPolicy, Path]:
    """An upload policy of one folder, and a file in it."""
    folder = tmp_path / "uploads"
    (folder / "3f9a").mkdir(parents=True)
    inside = folder / "3f9a" / "upload-1.zip"
    inside.write_bytes(b"PK")
    return uploads.UploadPolicy([folder]), inside


@pytest.mark.parametrize(
    "payload, expected",
    [
        ("/up/cat.jpg", ("/up/cat.jpg", None, "cat.jpg")),
        (Path("/up/cat.jpg"), ("/up/cat.jpg", None, "cat.jpg")),
        ({"path": "/up/x1", "orig_name": "dogs.zip"}, ("/up/x1", None, "dogs.zip")),
        ({"path": "/up/x1"}, ("/up/x1", None, "x1")),
        ({"path": None, "url": "data:image/png;base64,AA=="}, (None, "data:image/png;base64,AA==", "image")),
        ({"path": 3, "orig_name": "/etc/passwd"}, (3, None, "passwd")),
        (FileData(path="/up/x2", orig_name="birds.zip"), ("/up/x2", None, "birds.zip")),
        ({"path": "/up/x3", "orig_name": "a\x1bb\n.png"}, ("/up/x3", None, "ab.png")),
        (17, (None, None, "image")),
    ],
)
def test_a_payload_is_read_as_path_url_and_display_name(payload, expected):
    assert tuple(uploads.file_payload(payload)) == expected


def test_only_allowed_paths_pass_and_come_back_resolved(upload, tmp_path):
    policy, inside = upload
    assert uploads.checked_path(str(inside), policy, REFUSAL) == inside.resolve()
    via = tmp_path / "via"
    os.symlink(inside.parent, via)
    assert uploads.checked_path(str(via / inside.name), policy, REFUSAL) == inside.resolve()
    outside = tmp_path / "secret.zip"
    outside.write_bytes(b"PK")
    link = inside.parent / "link.zip"
    os.symlink(outside, link)
    for path in (str(outside), str(link), str(policy.folders[0]), str(inside) + "\0", Path(inside), None, 3):
        with pytest.raises(UserError) as info:
            uploads.checked_path(path, policy, REFUSAL)
        assert str(info.value) == REFUSAL


def test_the_image_and_the_zip_read_a_payload_alike(upload):
    policy, inside = upload
    sent = {"path": str(inside), "orig_name": "mine.zip", "meta": {"_type": "gradio.FileData"}}
    assert uploads.checked_image(sent, policy) == {"path": str(inside.resolve()), "url": None, "orig_name": "mine.zip"}
    assert values.image_name(sent) == "mine.zip"
    for payload in (sent, str(inside), FileData(path=str(inside), orig_name="mine.zip")):
        assert dataset_run.checked_archive(payload, policy) == inside.resolve()
    refused = {"path": "/etc/hostname", "orig_name": "mine.zip"}
    with pytest.raises(UserError, match="That image is not available"):
        uploads.checked_image(refused, policy)
    with pytest.raises(UserError, match="That zip is not available"):
        dataset_run.checked_archive(refused, policy)
    with pytest.raises(UserError, match="must be an uploaded file"):
        uploads.checked_image(FileData(path=str(inside)), policy)  # a web request's image is JSON
