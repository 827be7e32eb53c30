"""Write tests/data/descriptors/london.npz: both models' descriptors of the London volunteers' photos.

Usage: python bench/export_test_descriptors.py LONDON.npz [--variant fn_hogw]

Input: bench/fusion_embed.py's output for ../shared/faces/london. The tests need a 1,000-subject gallery of
real faces and cannot commit 1,000 photos; the 102 volunteers consented to research use of their photos
(CC BY 4.0), and these are derived numbers, not photos. See tests/data/descriptors/README.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "descriptors" / "london.npz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("london", type=Path)
    ap.add_argument("--variant", default="fn_hogw")
    args = ap.parse_args()
    z = np.load(args.london)
    ok = ~np.isnan(z["dlib"]).any(1) & ~np.isnan(z[args.variant]).any(1)
    names = [Path(str(n)) for n in z["names"][ok]]
    np.savez_compressed(OUT, labels=np.asarray([n.parent.name for n in names]),
                        pose=np.asarray([n.stem for n in names]),
                        dlib=z["dlib"][ok].astype(np.float32), facenet=z[args.variant][ok].astype(np.float32))
    print(f"{int(ok.sum())} photos of {len({n.parent.name for n in names})} people -> {OUT}")


if __name__ == "__main__":
    main()
