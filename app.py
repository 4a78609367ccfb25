"""Gradio web app: see why an ImageNet classifier made its decision.

The entry point only: the page is built by the ``webapp`` package (webapp/page.py wires the
inputs, the results view, the faithfulness panel and the handlers); every number comes from
``models`` and ``explainers`` (see docs/API.md).

Run it::

    python app.py                      # http://127.0.0.1:7860, offline, embedded efficientnet_lite0
    python app.py --host 0.0.0.0 --port 8080
    python app.py --share              # also a public Gradio share link

Call it from Python (gradio_client); parameters left out take the UI's defaults::

    from gradio_client import Client, handle_file

    client = Client("http://127.0.0.1:7860/")
    maps_html, predictions, archive, status, grid = client.predict(
        image=handle_file("assets/cat_and_coffee.jpg"),
        model="efficientnet_lite0",
        methods=["gradcam", "layercam"],
        top_k=2,                        # explain the 2 top predictions ...
        classes=["espresso"],           # ... plus these ("967", "967: espresso" work too)
        api_name="/explain",
    )
    print(predictions)  # {"label": "...", "confidences": [{"label": "...", "confidence": 0.41}, ...]}
    print(archive)      # a .zip in explainers/export.py's layout (the CLI's folder): overlays on
                        # the crop and on the whole photo, grid, maps.npz, the json record

/explain streams: ``client.submit(...)`` gives the maps table first (archive and grid None, as
the page shows it), then the same with the grid and the zip; ``predict`` returns the last.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

from webapp.memory import tune_malloc
from webapp.page import build_app
from webapp.server import launch

__all__ = ["build_app", "launch", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: python app.py [--host H] [--port P] [--share]."""
    parser = argparse.ArgumentParser(description="Visual explanations of ImageNet classifiers (Gradio web app).")
    # Hosts such as Hugging Face Spaces say where to listen through Gradio's own variables.
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to listen on (default 127.0.0.1, or $GRADIO_SERVER_NAME; 0.0.0.0 for all)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        help="port (default 7860, or $GRADIO_SERVER_PORT)",
    )
    parser.add_argument("--share", action="store_true", help="also create a public Gradio share link")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_malloc()
    # SIGTERM (docker stop, a host's restart) exits like Ctrl+C: the scratch folder is removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    launch(build_app(), host=args.host, port=args.port, share=args.share)


if __name__ == "__main__":
    main()
