"""The end-to-end demo behind ``make demo``: real photos of consenting volunteers, start to finish.

It creates a throwaway deployment, enrolls people, verifies and identifies, erases one person, and then
scans the files on disk to show that no photo and no readable template was ever stored.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from rich.console import Console

from facekeeper.errors import LicenseError
from facekeeper.service import Service
from facekeeper.vendor.testing import install_demo_license

console = Console(soft_wrap=True)
PEOPLE = ("001", "002", "003", "004")
STRANGER = "009"


def say(text: str) -> None:
    console.print(f"\n[bold cyan]>[/bold cyan] {text}")


def photo(images: Path, person: str, pose: str = "neutral") -> Path:
    return images / "london" / person / f"{pose}.jpg"


def scan_for_leaks(svc: Service, images: Path, people: tuple[str, ...]) -> list[str]:
    """Look through every file of the deployment for photo bytes and for the templates in plain form."""
    files = [p for d in (svc.settings.data_dir, svc.settings.key_dir) for p in d.rglob("*") if p.is_file()]
    disk = b"".join(p.read_bytes() for p in files)
    problems = []
    for magic, kind in ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"WEBP", "WebP")):
        if magic in disk:
            problems.append(f"{kind} signature found")
    for person in people:
        raw = photo(images, person).read_bytes()
        if raw[1000:1064] in disk:
            problems.append(f"bytes of {person}'s photo found")
        descriptor = svc.engine.template(photo(images, person))[0]
        for vec in (descriptor, svc.gallery.protect(descriptor, svc.engine.model_id)):
            if np.asarray(vec, "<f4").tobytes()[:32] in disk:
                problems.append(f"a plaintext template of {person} found")
    console.print(f"  scanned {len(files)} file(s), {len(disk):,} bytes: "
                  + ("[green]nothing found[/green]" if not problems else f"[red]{problems}[/red]"))
    return problems


def run(images: Path, workdir: Path) -> int:
    if workdir.exists():
        shutil.rmtree(workdir)
    data_dir, key_dir = workdir / "data", workdir / "keys"
    say(f"Creating a deployment: data in {data_dir}, deployment key in {key_dir} (kept apart, mode 0600)")
    svc = Service.init(data_dir, key_dir)
    try:
        say("Without a license only 'detect' works; installing an offline license (a demo vendor key stands"
            " in for the vendor's, so it is an evaluation license)")
        try:
            svc.verify(photo(images, PEOPLE[0]), photo(images, PEOPLE[0], "smiling"))
        except LicenseError as exc:
            console.print(f"  before: {exc.message}", markup=False)
        lic = install_demo_license(svc, workdir / "vendor")
        status = svc.license.status(svc.gallery.store.subject_count())
        console.print(f"  installed: {lic.licensee}, {', '.join(lic.features)}, up to {lic.subject_cap} subjects,"
                      f" deployment {lic.deployment_id[:8]}..., status {status.state}")

        say(f"Enrolling {len(PEOPLE)} volunteers from the London set, one photo each")
        for person in PEOPLE:
            r = svc.enroll([photo(images, person)], person, name=f"Volunteer {person}")
            q = r.quality[0]
            console.print(f"  {person}: stored 1 protected template as {r.pseudonym} (eye distance "
                          f"{q['eye_distance']:.0f} px, sharpness {q['sharpness']:.0f}); the photo was discarded")

        say("Verifying a genuine pair: volunteer 001 neutral vs smiling")
        d = svc.verify(photo(images, "001"), photo(images, "001", "smiling")).decision
        console.print(f"  {'MATCH' if d.match else 'NO MATCH'}: distance {d.distance:.3f}, threshold "
                      f"{d.threshold:.3f} at FMR {d.target_fmr:g}")
        say("Verifying an impostor pair: volunteer 001 vs volunteer 002")
        d = svc.verify(photo(images, "001"), photo(images, "002")).decision
        console.print(f"  {'MATCH' if d.match else 'NO MATCH'}: distance {d.distance:.3f}, threshold "
                      f"{d.threshold:.3f}")

        say("Identifying a new photo of volunteer 002 among everyone enrolled")
        r = svc.identify(photo(images, "002", "smiling"))
        console.print(f"  answer: {r.match.subject_id if r.match else 'unknown'} "
                      f"(distance {r.candidates[0].decision.distance:.3f})")
        say(f"Identifying a stranger (volunteer {STRANGER}, never enrolled)")
        r = svc.identify(photo(images, STRANGER))
        console.print(f"  answer: {r.match.subject_id if r.match else 'unknown'}: nearest is "
                      f"{r.candidates[0].decision.distance:.3f} away, over the threshold "
                      f"{r.candidates[0].decision.threshold:.3f} for FPIR {r.target_fpir:g}")

        say("Listing subjects")
        for s in svc.subjects():
            console.print(f"  {s.subject_id}  {s.name}  {s.pseudonym}  templates={s.templates}")

        say("Erasing volunteer 003: destroying the subject's key makes every copy of its template unreadable")
        e = svc.delete("003")
        console.print(f"  erased {e['templates_erased']} template(s) of {e['pseudonym']}")
        r = svc.identify(photo(images, "003", "smiling"))
        console.print(f"  identifying 003 now: {r.match.subject_id if r.match else 'unknown'}")

        say("Scanning the deployment's files for photos or readable templates")
        problems = scan_for_leaks(svc, images, PEOPLE)
    finally:
        svc.close()
    say("Done. " + ("Nothing but protected templates is on disk." if not problems else "LEAK FOUND"))
    return 1 if problems else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=Path, default=Path("tests/data"), help="folder holding london/<id>/*.jpg")
    ap.add_argument("--workdir", type=Path, default=Path("demo-deployment"))
    args = ap.parse_args()
    raise SystemExit(run(args.images, args.workdir))


if __name__ == "__main__":
    main()
