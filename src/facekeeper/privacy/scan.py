"""Look at the bytes on disk for what must never be there: photos and plaintext templates.

Three checks, each stated so a reader can judge what a clean result proves:
1. *image signatures anywhere in any file* (also inside database pages): the 8-byte PNG signature, a JPEG
   start-of-image whose first segments parse (SOI, then two well-formed marker segments), WebP's RIFF/WEBP
   header, GIF87a/GIF89a; and every whole file is offered to Pillow, which recognises some 40 formats;
2. *plaintext float vectors anywhere in any file*: a run of 128 or more consecutive little-endian float32
   values, at any of the four byte alignments, all finite and non-zero with magnitude in [1e-7, 2). Face
   descriptors (raw or rotated) look exactly like that; ciphertext, SQLite pages and text practically never
   do (about 9% of random float32 values fall in the range, so 128 in a row is beyond chance);
3. *every stored template row is AES-GCM sized and does not parse as a plain vector*: 12-byte nonce +
   16-byte tag + a 2-byte header and 4 bytes per dimension, and not a bare ``<H count><floats>`` record.
It cannot see what was written and deleted by the filesystem's own recycling, nor other directories.

Signatures cannot see pixels without a header. Given the enrolled photos themselves (the demo and the
tests have them; a site can give a sample), ``photo_copies`` looks for copies in any form: the file's
bytes, its decoded pixels, a grayscale version, the 150x150 aligned chip the engine cuts and its
grayscale, each found raw, inside base64 text (standard or URL-safe) or inside a zlib/gzip stream. It
matches exact fragments of rows of each form: a copy that was resized, re-encoded or converted to
grayscale with other rounding is not recognised by it.
"""

from __future__ import annotations

import base64
import binascii
import mmap
import re
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from facekeeper.errors import FacekeeperError
from facekeeper.gallery.protect import NONCE_BYTES, SealError, vector_from_bytes
from facekeeper.gallery.store import Store

if TYPE_CHECKING:
    from facekeeper.engine import Engine

MIN_RUN = 128
_SIGNATURES = [
    ("png", re.compile(rb"\x89PNG\r\n\x1a\n")),
    ("webp", re.compile(rb"RIFF....WEBPVP8", re.DOTALL)),
    ("gif", re.compile(rb"GIF8[79]a")),
]
_JPEG_SOI = re.compile(rb"\xff\xd8\xff")
_TAG = 16


@dataclass
class ScanReport:
    files: int = 0
    bytes: int = 0
    images: list[dict[str, Any]] = field(default_factory=list)  # {"file", "format", "offset"}
    plaintext_vectors: list[dict[str, Any]] = field(default_factory=list)  # {"file", "offset", "floats"}
    template_rows: int = 0
    template_rows_not_sealed: int = 0

    @property
    def clean(self) -> bool:
        return not self.images and not self.plaintext_vectors and not self.template_rows_not_sealed

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}


def _jpeg_at(data: bytes | mmap.mmap, pos: int) -> bool:
    """Two well-formed segments after SOI: random bytes match the 3-byte SOI often, this almost never."""
    p = pos + 2
    for _ in range(2):
        if p + 4 > len(data) or data[p] != 0xFF or data[p + 1] in (0x00, 0xFF, 0xD8, 0xD9):
            return False
        length = int.from_bytes(data[p + 2 : p + 4], "big")
        if length < 2:
            return False
        p += 2 + length
    return p < len(data) and data[p] == 0xFF


def image_signatures(data: bytes | mmap.mmap) -> list[tuple[str, int]]:
    found = [(name, m.start()) for name, rx in _SIGNATURES for m in rx.finditer(data)]
    found += [("jpeg", m.start()) for m in _JPEG_SOI.finditer(data) if _jpeg_at(data, m.start())]
    return sorted(found, key=lambda f: f[1])


def float_runs(data: bytes | mmap.mmap, min_run: int = MIN_RUN) -> list[tuple[int, int]]:
    """(byte offset, length in floats) of every run of descriptor-like float32 values."""
    out: list[tuple[int, int]] = []
    raw = np.frombuffer(data, dtype=np.uint8)
    for align in range(4):
        n = (len(raw) - align) // 4
        if n < min_run:
            continue
        vals = np.abs(raw[align : align + 4 * n].view("<f4"))
        ok = np.isfinite(vals) & (vals >= 1e-7) & (vals < 2.0)
        edges = np.diff(np.concatenate(([0], ok.view(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        out += [(align + 4 * int(s), int(e - s)) for s, e in zip(starts, ends, strict=True) if e - s >= min_run]
    return sorted(out)


def is_image_file(path: Path) -> str | None:
    try:
        with Image.open(path) as im:
            return str(im.format)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def scan_paths(roots: list[Path], report: ScanReport | None = None) -> ScanReport:
    report = report or ScanReport()
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()):
            size = path.stat().st_size
            report.files += 1
            report.bytes += size
            if size == 0:
                continue
            name = str(path)
            fmt = is_image_file(path)
            if fmt is not None:
                report.images.append({"file": name, "format": fmt.lower(), "offset": 0})
            with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                report.images += [{"file": name, "format": f, "offset": o} for f, o in image_signatures(data)
                                  if not (fmt is not None and o == 0)]
                report.plaintext_vectors += [{"file": name, "offset": o, "floats": n} for o, n in float_runs(data)]
    return report


def check_template_rows(store: Store, report: ScanReport) -> ScanReport:
    """Every template blob must be AES-GCM sized and not a bare serialized vector."""
    for rows in store.iter_templates():
        for r in rows:
            report.template_rows += 1
            body = len(r.sealed) - NONCE_BYTES - _TAG - 2
            sealed_size = body > 0 and body % 4 == 0
            try:
                vector_from_bytes(r.sealed)
                plain = True
            except (SealError, struct.error):
                plain = False
            if plain or not sealed_size:
                report.template_rows_not_sealed += 1
    return report


# -- copies of known photos, in any form --------------------------------------------------------------
FRAGMENT = 48  # bytes of one needle: a chance match in a few GB is ~2^-300 once a fragment varies
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{64,}")
_ZLIB_HEADER = re.compile(rb"\x78[\x01\x5e\x9c\xda]|\x1f\x8b\x08")
_INFLATE_MAX = 64 << 20  # a stream inflating beyond this is a bomb, not a copy of a photo


@dataclass(frozen=True)
class PhotoCopy:
    file: str
    photo: str
    form: str  # "file bytes", "pixels", "grayscale", "chip", "grayscale chip"
    encoding: str  # "raw", "base64", "zlib"


def _grayscale(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma rounded as Pillow's ``convert("L")`` does."""
    return np.asarray(Image.fromarray(rgb).convert("L"))


def _row_fragments(pixels: np.ndarray, rows: int = 12) -> list[bytes]:
    """Fragments from the middle of evenly spaced rows, skipping flat ones (a plain background matches
    anything plain)."""
    h, w = pixels.shape[:2]
    per_px = 1 if pixels.ndim == 2 else pixels.shape[2]
    width = min(w, max(1, FRAGMENT // per_px))
    left = (w - width) // 2
    out = []
    for y in np.linspace(0, h - 1, rows).astype(int):
        frag = np.ascontiguousarray(pixels[y, left : left + width]).tobytes()
        if len(set(frag)) >= 8:
            out.append(frag)
    return out


def photo_fingerprints(photos: Sequence[Path], engine: Engine) -> dict[str, dict[str, list[bytes]]]:
    """Per photo, per form: the fragments ``photo_copies`` looks for."""
    out: dict[str, dict[str, list[bytes]]] = {}
    for path in photos:
        data = path.read_bytes()
        rgb = engine.decode(path)
        # the file's first quarter is skipped: headers and tables are shared by every photo of one camera
        forms = {"file bytes": [data[o : o + FRAGMENT] for o in range(len(data) // 4, len(data) - FRAGMENT + 1, 1024)],
                 "pixels": _row_fragments(rgb), "grayscale": _row_fragments(_grayscale(rgb))}
        try:
            chip = engine.single_face(rgb, enrollment=False).chip
        except FacekeeperError:  # no single face: there is no chip to look for
            pass
        else:
            forms["chip"] = _row_fragments(chip)
            forms["grayscale chip"] = _row_fragments(_grayscale(chip))
        out[str(path)] = forms
    return out


def decoded_views(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The bytes themselves, then what every base64 run and zlib/gzip stream in them decodes to."""
    yield "raw", data
    for m in _BASE64_RUN.finditer(data):
        text = m.group().replace(b"-", b"+").replace(b"_", b"/")
        for shift in range(4):  # the run may start mid-quantum when its text is glued to other letters
            body = text[shift:]
            try:
                yield "base64", base64.b64decode(body[: len(body) - len(body) % 4], validate=True)
            except (binascii.Error, ValueError):
                continue
    for m in _ZLIB_HEADER.finditer(data):
        start = m.start()
        if data[start] == 0x78 and (data[start] * 256 + data[start + 1]) % 31:
            continue
        inflater = zlib.decompressobj(zlib.MAX_WBITS | (16 if data[start] == 0x1F else 0))
        try:
            out = inflater.decompress(data[start:], _INFLATE_MAX)
        except zlib.error:
            continue
        if len(out) >= FRAGMENT:
            yield "zlib", out


def photo_copies(roots: Sequence[Path], photos: Sequence[Path], engine: Engine) -> list[PhotoCopy]:
    """Every file under ``roots`` holding a fragment of one of ``photos`` in any form and encoding."""
    prints = photo_fingerprints(photos, engine)
    found: set[PhotoCopy] = set()
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            data = path.read_bytes()
            for encoding, view in decoded_views(data):
                for photo, forms in prints.items():
                    for form, frags in forms.items():
                        if any(f in view for f in frags):
                            found.add(PhotoCopy(str(path), Path(photo).name, form, encoding))
    return sorted(found, key=lambda c: (c.file, c.photo, c.form, c.encoding))
