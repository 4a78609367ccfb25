"""Test setup: import the project from the repository root and the test helpers from tests/."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

pytest_plugins = ["browser_pages"]  # the real-browser tests' fixtures: server, browser, page
