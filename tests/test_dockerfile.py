"""The Dockerfile (no Docker engine here): it copies everything the app imports, and runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOCAL_IMPORTS = """
import sys
from pathlib import Path
import app
root = Path.cwd().resolve()
files = [Path(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)]
tops = {f.resolve().relative_to(root).parts[0] for f in files  # (torch names some files relatively)
        if f.is_absolute() and f.resolve().is_relative_to(root)}
print(" ".join(sorted(tops)))
"""


def test_the_image_holds_every_local_module_the_app_imports_and_its_assets():
    copied = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        match = re.match(r"COPY\s+(\S+)\s+\S+\s*$", line)
        if match:
            copied.add(match.group(1).rstrip("/"))
    imported = subprocess.run(
        [sys.executable, "-c", LOCAL_IMPORTS], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    assert "app.py" in imported and "webapp" in imported
    assert set(imported) <= copied, set(imported) - copied
    assert {"assets", "requirements.txt"} <= copied
    assert 'CMD ["python", "app.py"' in (ROOT / "Dockerfile").read_text()  # exec form: SIGTERM reaches it
