"""The web app's pieces that are not layout: what a web visitor may send, what the server keeps
for them, and for how long. ``app.py`` builds the page and wires these in."""
