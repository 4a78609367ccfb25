"""The web app (``app.py`` is its entry point), split by what a person sees:

- ``page``: the page's layout and the events between its parts;
- ``inputs``: the image, examples, Explain/Stop, model, layer, methods and classes;
- ``results_view``: the maps table, predictions, display controls and the files behind them;
- ``faithfulness``: the "How faithful is this?" panel;
- ``handlers``: what the events and the API call; ``state``: results and engine slots;
- ``choices``, ``values``, ``config``, ``style``, ``server``, ``files``, ``memory``: what the
  inputs offer, request values checked, settings, CSS, launch, per-request folders, memory;
- and what a web visitor may send and cost: ``uploads``, ``components``, ``http_limits``,
  ``queue_policy``, ``budget``, ``result_store``, ``scratch``, ``errors``.
"""
