"""``facekeeper gate run`` and ``gate status``: the access gate on a camera stream.

Registered on the main app by ``cli/main.py``; uses its ``--home``/``--json``/``--actor`` state and error
handling (imported when a command runs). The gate acts as a ``device``: every door decision goes through
``Service.gate_decide`` and is audited once. Settings come from ``[gate]`` and ``[doors.NAME]`` in the
deployment's ``facekeeper.toml``; the options override them.
"""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from types import FrameType
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from facekeeper import config
from facekeeper.engine import Engine
from facekeeper.errors import ConfigError
from facekeeper.gate.decision import GateDecision

app = typer.Typer(help="Gate mode: a camera at a door, one decision per pass, a door controller told.",
                  no_args_is_help=True)


@app.command("run")
def run(
    source: Annotated[str | None, typer.Option(help="/dev/video0, rtsp://ADDRESS/PATH or a video file"
                                                    " [gate.source].")] = None,
    purpose: Annotated[str | None, typer.Option(help="The purpose people consented to [gate.purpose].")] = None,
    door: Annotated[str | None, typer.Option(help="The [doors.NAME] this camera watches [gate.door].")] = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many frames (replays, checks).")] = None,
) -> None:
    """Watch the camera and open the door for people consented for the purpose; Ctrl-C or SIGTERM stops."""
    from facekeeper.cli.main import handled, out, state
    from facekeeper.egress import EgressGuard
    from facekeeper.gate.doors import output_for
    from facekeeper.gate.runner import GateRunner, status_path
    from facekeeper.gate.source import Source, redacted
    from facekeeper.privacy import Actor
    from facekeeper.service import Service

    with handled():
        settings = config.load(state.home)
        g = settings.gate
        spec, door_name, purpose_name = source or g.source, door or g.door, purpose or g.purpose
        if not spec or not door_name:
            raise ConfigError("give --source and --door (or [gate] source and door in facekeeper.toml)")
        rules = settings.doors.get(door_name)
        if rules is None:
            raise ConfigError(f"no door {door_name!r}: declare it as [doors.{door_name}] in {config.CONFIG_NAME}")
        # the gate's detector looks only for faces large enough to use: no upsampling, no quick pass
        engine = Engine(replace(settings.engine, upsample=0, quick_face=0.0), settings.quality, settings.limits)
        with EgressGuard(allow=g.allow_nets), Service.open(state.home, engine=engine) as svc:
            svc.actor = Actor(state.actor or f"gate-{door_name}", "device")
            output = output_for(door_name, rules, g.allow_nets)
            feed = Source(spec, allow_nets=g.allow_nets,
                          on_event=lambda event, facts: out.print(f"camera {event} {facts}"))

            def decide(descriptors: list[np.ndarray], present: float) -> GateDecision:
                return svc.gate_decide(descriptors, door_name, present_for=present, open_door=output,
                                       purpose=purpose_name)

            def shown(d: GateDecision) -> None:
                out.print(f"{time.strftime('%H:%M:%S')} door {d.door}: {d.outcome} ({d.via}), door answer"
                          f" {d.door_answer}", highlight=False)

            def stop(signum: int, frame: FrameType | None) -> None:
                feed.stop()

            signal.signal(signal.SIGTERM, stop)
            runner = GateRunner(feed, engine, decide, door=door_name, settings=g,
                                min_presence=rules.min_presence_seconds,
                                status_file=status_path(settings.data_dir, door_name), on_decision=shown)
            out.print(f"gate {door_name}: watching {redacted(spec)} for {purpose_name}, output {output.kind}")
            try:
                metrics = runner.run(max_frames)
            except KeyboardInterrupt:
                metrics = runner.metrics
            finally:
                output.close()
        out.print(f"gate {door_name}: {metrics.frames} frames, decisions {metrics.decisions or 'none'}")


@app.command("status")
def status() -> None:
    """Each door's gate: connected, frames/s, decode errors, reconnections, tracks, decisions, latency."""
    from facekeeper.cli.main import emit, handled, out, state
    from facekeeper.gate.runner import read_statuses

    with handled():
        config.load(state.home)
        gates = read_statuses(state.home)

    def facts(m: Any) -> list[tuple[str, str]]:
        latency = f"{1000 * m.latency_sum / m.latency_count:.0f} ms" if m.latency_count else "-"
        return [
            ("source", m.source), ("connected", "yes" if m.connected else "no"),
            ("frames/s", f"{m.frames_per_second:g}"), ("frames", str(m.frames)),
            ("decode errors", str(m.decode_errors)), ("reconnects", str(m.reconnects)),
            ("tracks now / all / without a match",
             f"{m.tracks_active} / {m.tracks_started} / {m.tracks_without_match}"),
            ("decisions", ", ".join(f"{k} {v}" for k, v in sorted(m.decisions.items())) or "-"),
            ("door answers", ", ".join(f"{k} {v}" for k, v in sorted(m.door_answers.items())) or "-"),
            ("mean decision latency", latency),
            ("updated", f"{time.time() - m.updated_at:.0f} s ago" if m.updated_at else "-"),
        ]

    def human() -> None:
        if not gates:
            out.print("no gate has run in this deployment ('facekeeper gate run')")
        for m in gates:
            table = Table(f"door {m.door}", "", show_header=True)
            for name, value in facts(m):
                table.add_row(name, value)
            out.print(table)

    emit([m.to_dict() for m in gates], human)
