"""``facekeeper liveness``: check one recording against a challenge, or measure attacks on a folder of clips.

Both run the same rules the service runs (``facekeeper.liveness``) with a local engine; neither opens a
deployment nor keeps a frame. Registered on the main app by ``cli/main.py``, whose ``--json`` state and
error handling they use (imported when a command runs, as ``main`` imports this module while building).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, cast

import typer

from facekeeper.errors import InvalidInput
from facekeeper.liveness.rules import ACTIONS, Action

app = typer.Typer(help="Active liveness: check a recording, measure attacks (ISO/IEC 30107-3).",
                  no_args_is_help=True)


def _engine():  # -> Engine
    from facekeeper.cli import main as cli
    from facekeeper.config import EngineSettings
    from facekeeper.engine import Engine

    settings = EngineSettings()
    if cli.state.backend:
        settings.backend = cli.state.backend
    return Engine(settings)


def parse_challenge(text: str) -> list[Action]:
    steps = [s.strip() for s in text.split(",") if s.strip()]
    if not steps or any(s not in ACTIONS for s in steps):
        raise InvalidInput(f"a challenge is a comma-separated list of {', '.join(ACTIONS)}")
    return cast(list[Action], steps)


@app.command("check")
def check(
    video: Annotated[Path, typer.Argument(help="A recording of the person answering the challenge.")],
    challenge: Annotated[str | None, typer.Option(help="The actions asked, in order, e.g. 'turn-left,blink' "
                                                       "[none: list the actions seen]." )] = None,
) -> None:
    """Decide live, spoof or uncertain for a recording (or, without a challenge, show what it holds)."""
    from facekeeper.cli import main as cli
    from facekeeper.liveness import frames, observe, rules

    with cli.handled():
        asked = parse_challenge(challenge) if challenge else None
        obs = observe.observe(_engine(), frames.video_file(video))
        if asked is not None:
            data = rules.decide(obs, asked).to_dict() | {"challenge": asked}
        else:
            a = rules.assess(obs)
            data = {"checks": a.code or "passed", "events": [e.to_dict() for e in a.events], "frames": a.frames,
                    "duration": round(a.duration, 3), "fps": round(a.fps, 2)}

        def human() -> None:
            if asked is not None:
                cli.out.print(f"{data['outcome'].upper()}: {'; '.join(data['why'])}", markup=False)
            else:
                cli.out.print(f"checks: {data['checks']}", markup=False)
            for e in data["events"]:
                cli.out.print(f"  {e['start']:6.2f}-{e['end']:6.2f} s  {e['action']}", markup=False)
            cli.out.print(f"  {data['frames']} frames, {data['duration']} s, {data['fps']} fps", markup=False)

        cli.emit(data, human)
    if asked is not None and data["outcome"] != "live":
        raise typer.Exit(1)


@app.command("eval")
def evaluate(
    clips: Annotated[Path, typer.Argument(help="A folder of bona fide clips (mp4, mov, avi, mkv, webm).")],
    labels: Annotated[Path | None, typer.Option(help="JSON: clip name -> the actions it shows, turns in order "
                                                     "[the events found on each clip].")] = None,
    stills: Annotated[int, typer.Option(help="Stills per clip for the photo attacks.")] = 2,
    seconds: Annotated[float | None, typer.Option(help="Read only the first seconds of each clip.")] = None,
) -> None:
    """Build every attack species from bona fide clips; APCER per species, BPCER, 95% upper bounds, timings."""
    from facekeeper.cli import main as cli
    from facekeeper.liveness import evaluate as ev

    with cli.handled():
        report = ev.run(_engine(), clips, labels=labels, stills_per_clip=stills, max_seconds=seconds,
                        progress=None if cli.state.json else lambda s: cli.err.print(s, markup=False))
    if cli.state.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        cli.out.print(report.text(), markup=False)
