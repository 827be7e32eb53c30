"""Gate mode on a 640x360 stream: frames/s on one core, decision latency, false opens for strangers.

A 640x360, 15 fps video is made from the London volunteers' photos (tests/data/london): people walk across
a plain background, one or two in view at a time. Ten are enrolled (neutral photo) and consented for
access-control; the video shows their smiling photo, and the other volunteers as strangers. Two runs per
detector, pinned to one CPU core (onnxruntime and OpenCV single-threaded):

1. throughput: the video decoded and processed as fast as one core allows (frames / wall time);
2. live: the video paced at 15 fps, frames skipped when processing falls behind (as a camera would), and
   each decision's latency from the frame where the face first reached a usable size to the decision
   (door output included: a dry run).

Prints one Markdown table. Run: ``.venv/bin/python bench/gate.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
from tests.gate.videos import Walk, make_video

from facekeeper.config import DoorSettings
from facekeeper.engine import Engine
from facekeeper.gate.decision import GateDecision
from facekeeper.gate.doors import DryRun
from facekeeper.gate.runner import GateRunner
from facekeeper.gate.source import Source
from facekeeper.privacy import Actor, ConsentForm
from facekeeper.publisher.testing import install_test_license
from facekeeper.service import Service

LONDON = Path(__file__).resolve().parents[1] / "tests" / "data" / "london"
NOTICE = {"version": "bench", "controller": "Bench", "contact": "bench@example.invalid", "retention": "bench",
          "rights": "bench"}


def people() -> tuple[list[str], list[str]]:
    everyone = sorted(p.name for p in LONDON.iterdir() if p.is_dir())
    return everyone[:10], everyone[10:]


def scenario(enrolled: list[str], strangers: list[str]) -> tuple[list[Walk], float]:
    """Passes of 2.4 s, two people in view for most of them; each person passes once."""
    walks = []
    order = [p for pair in zip(enrolled, strangers, strict=False) for p in pair] + enrolled[len(strangers):]
    t = 0.0
    for i, person in enumerate(order):
        left = i % 2 == 0
        walks.append(Walk(person, t, t + 2.4, x0=20 if left else 380, x1=140 if left else 260))
        t += 1.4 if left else 1.6  # the next person enters before this one leaves
    return walks, t + 2.6


def site(root: Path, enrolled: list[str], engine: Engine) -> Service:
    svc = Service.init(root / "data", root / "keys")
    install_test_license(svc)
    svc.engine = engine
    svc.set_notice(**NOTICE)
    admin = Actor("bench", "admin")
    for person in enrolled:
        svc.grant_consent(person, None, ConsentForm("checkbox", "bench"), actor=admin)
        svc.enroll([LONDON / person / "neutral.jpg"], person, actor=admin)
    svc.settings.doors["main"] = DoorSettings(anti_passback_seconds=600.0)
    return svc


def run(svc: Service, engine: Engine, video: Path, realtime: bool) -> tuple[float, list[float], list[GateDecision]]:
    import time

    decisions: list[GateDecision] = []
    latencies: list[float] = []
    output = DryRun()
    device = Actor("bench-gate", "device")
    runner = GateRunner(Source(str(video), realtime=realtime), engine,
                        lambda d, present: svc.gate_decide(d, "main", present_for=present, open_door=output,
                                                           actor=device),
                        door="main", settings=svc.settings.gate,
                        min_presence=svc.settings.doors["main"].min_presence_seconds, on_decision=decisions.append)
    record = runner.metrics.decided

    def decided(decision: GateDecision | None, outcome: str, latency: float) -> None:
        latencies.append(latency)
        record(decision, outcome, latency)

    runner.metrics.decided = decided  # type: ignore[method-assign]
    started = time.perf_counter()
    metrics = runner.run()
    return metrics.frames / (time.perf_counter() - started), latencies, decisions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", default="hog,yunet")
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    enrolled, strangers = people()
    walks, seconds = scenario(enrolled, strangers)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "gate.avi", walks, seconds, fps=15)
        for detector in args.detectors.split(","):
            base = Engine()
            engine = Engine(replace(base.settings, detector=detector, upsample=0, quick_face=0.0, onnx_threads=1),
                            base.quality_settings, base.limits)
            for realtime in (False, True):
                root = Path(tmp) / f"{detector}-{realtime}"
                svc = site(root, enrolled, engine)
                fps, latencies, decisions = run(svc, engine, video, realtime)
                opens = [d.subject_id for d in decisions if d.opened]
                false_opens = sum(1 for d in decisions if d.opened and d.subject_id not in enrolled)
                rows.append((detector, "paced 15 fps" if realtime else "as fast as one core", fps,
                             len([w for w in walks if w.person in enrolled]), len(set(opens)), len(opens),
                             sum(1 for w in walks if w.person in strangers), false_opens,
                             statistics.median(latencies) if latencies else float("nan"),
                             max(latencies, default=float("nan")), svc.settings.gate.fpir))
                svc.close()
                print(f"{detector} realtime={realtime}: {fps:.1f} frames/s, {len(decisions)} decisions",
                      file=sys.stderr)
    print(f"640x360, 15 fps, {seconds:.0f} s, {len(walks)} passes (one or two faces in view), one CPU core:\n")
    print("| detector | run | frames/s | enrolled passes | people let in | opens | stranger passes | false opens"
          " | latency p50 | latency max | FPIR |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]} | {r[4]} | {r[5]} | {r[6]} | {r[7]} | {1000 * r[8]:.0f} ms"
              f" | {1000 * r[9]:.0f} ms | {r[10]:g} |")


if __name__ == "__main__":
    main()
