"""``python -m facekeeper.vendor``: the vendor CLI when the console script is not installed."""

from facekeeper.vendor.cli import app

app(prog_name="facekeeper-vendor")
