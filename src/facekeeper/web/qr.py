"""The QR code of an alternative credential's token, drawn on the server as SVG (segno: pure Python, BSD).

The token is shown once, when it is issued, so the page that issues it is the only place its code appears;
nothing is written to disk and no image service is asked. Error correction M with the standard four-module
quiet zone, so a reader scans it from a phone screen or a printed slip.
"""

from __future__ import annotations

import io
from html import escape

import segno
from markupsafe import Markup

MODULE_PX = 5  # CSS pixels per module: large enough to scan from a tablet screen or a printed slip


def svg(token: str, label: str = "QR code of the token") -> Markup:
    """``token`` as an inline SVG QR code, titled ``label`` for screen readers."""
    code = segno.make(token, error="m", micro=False)
    out = io.BytesIO()
    code.save(out, kind="svg", scale=MODULE_PX, border=4, xmldecl=False, svgns=True, title=label,
              svgclass="qr", lineclass=None, dark="#000", light="#fff")
    text = out.getvalue().decode("ascii").strip()
    return Markup(text.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1))
