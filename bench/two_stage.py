"""Recall of accurate mode's two-stage 1:N search against exhaustive fused scoring, at 10k and 100k subjects.

Usage: python bench/two_stage.py FACES94.npz LONDON.npz [--sizes 10000 100000] [--probes 1000]

There are no 100k real people with both templates, so the galleries are synthetic but shaped by real ones:
the person means of faces94 and London (254 people; dlib and FaceNet concatenated, so the two models stay
correlated) give a mean and covariance of identities, and photos minus their person mean give the within-person
covariance. A synthetic identity is the real mean plus a Gaussian draw from the identity covariance; a photo
of it adds a draw from the within-person covariance; each model's part is then scaled to unit length. The
identity draws live in the span of 253 real differences, so they are denser than real faces: a harder test.

Half the probes are new photos of enrolled identities, half are strangers (identities never enrolled). For
each probe the exhaustive search scores every subject by the fused score; the two-stage search takes the K
nearest by dlib distance and re-ranks those. Recall@1 = the two-stage best equals the exhaustive best.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facekeeper.fusion import FusionCalibration
from facekeeper.matching import per_comparison_fmr

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src" / "facekeeper" / "data" / "calibration.json"


def real_parts(paths: list[Path], variant: str) -> tuple[np.ndarray, np.ndarray]:
    """(person means, within-person residuals) of the concatenated [dlib | FaceNet] vectors."""
    means, resid = [], []
    for path in paths:
        z = np.load(path)
        ok = ~np.isnan(z["dlib"]).any(1) & ~np.isnan(z[variant]).any(1)
        v = np.hstack([z["dlib"][ok], z[variant][ok]]).astype(np.float64)
        labels = z["labels"][ok]
        for person in np.unique(labels):
            rows = v[labels == person]
            if len(rows) < 2:
                continue
            means.append(rows.mean(0))
            resid.extend(rows - rows.mean(0))
    return np.asarray(means), np.asarray(resid)


def unit_parts(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d, f = v[:, :128], v[:, 128:]
    return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32), \
        (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)


def sampler(means: np.ndarray, resid: np.ndarray, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    mu = means.mean(0)
    between = means - mu
    # within-person noise: principal directions of the residuals, scaled by their spread
    _, s, vt = np.linalg.svd(resid - resid.mean(0), full_matrices=False)
    within_scale = s / np.sqrt(len(resid))

    def identities(n: int) -> np.ndarray:
        w = rng.standard_normal((n, len(between))) / np.sqrt(len(between))
        return mu + w @ between * np.sqrt(len(between) / (len(between) - 1))

    def photos(ids: np.ndarray) -> np.ndarray:
        w = rng.standard_normal((len(ids), len(within_scale))) * within_scale
        return ids + w @ vt

    return identities, photos


def dists(probe: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(2 - 2 * gallery @ probe, 0))


def main() -> None:
    import json

    ap = argparse.ArgumentParser()
    ap.add_argument("npz", type=Path, nargs="+")
    ap.add_argument("--variant", default="fn_hogw")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 50, 200])
    ap.add_argument("--fpir", type=float, default=0.01)
    args = ap.parse_args()
    fusion = FusionCalibration.from_dict(json.loads(TABLE.read_text())["fusion"])
    rng = np.random.default_rng(8)
    means, resid = real_parts(args.npz, args.variant)
    identities, photos = sampler(means, resid, rng)
    print(f"fitted on {len(means)} real people, {len(resid)} photos; centre: {fusion.centre is not None}")
    print("| subjects | K | probes (enrolled / strangers) | recall@1 vs exhaustive | same decision |"
          " enrolled found at rank 1 (exhaustive / two-stage) |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        ids = identities(n + args.probes // 2)
        gal_d, gal_f = unit_parts(photos(ids[:n]))
        half = args.probes // 2
        truth = rng.choice(n, half, replace=False)
        probe_ids = np.vstack([ids[truth], ids[n:n + args.probes - half]])
        pr_d, pr_f = unit_parts(photos(probe_ids))
        # a sanity check that the synthetic set looks like the real one
        gd = np.linalg.norm(pr_d[:half] - gal_d[truth], axis=1)
        imp = np.linalg.norm(pr_d[half:half + 200, None] - gal_d[None, :200], axis=2).ravel()
        print(f"<!-- n={n}: synthetic dlib genuine distance mean {gd.mean():.3f}, impostor {imp.mean():.3f} -->")
        c = fusion.centre
        gal_fc = gal_f if c is None else _centre(gal_f, c)
        threshold = fusion.table.threshold(per_comparison_fmr(args.fpir, n)).value
        for k in args.ks:
            same = agree = found_ex = found_two = 0
            for i in range(args.probes):
                dd = dists(pr_d[i], gal_d)
                pf = pr_f[i] if c is None else _centre(pr_f[i][None], c)[0]
                fused_all = fusion.dlib.z(dd) + fusion.facenet.z(dists(pf, gal_fc))
                best_ex = int(np.argmin(fused_all))
                top = np.argpartition(dd, k)[:k]
                best_two = int(top[np.argmin(fused_all[top])])
                same += best_ex == best_two
                agree += (fused_all[best_ex] <= threshold) == (fused_all[best_two] <= threshold)
                if i < half:
                    found_ex += best_ex == truth[i]
                    found_two += best_two == truth[i]
            print(f"| {n:,} | {k} | {half} / {args.probes - half} | {same / args.probes:.4f} |"
                  f" {agree / args.probes:.4f} | {found_ex / half:.4f} / {found_two / half:.4f} |")


def _centre(v: np.ndarray, c: np.ndarray) -> np.ndarray:
    x = v.astype(np.float64) - c
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


if __name__ == "__main__":
    main()
