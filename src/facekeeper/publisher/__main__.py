"""``python -m facekeeper.publisher``: the vendor CLI when the console script is not installed."""

from facekeeper.publisher.cli import app

app(prog_name="facekeeper-vendor")
