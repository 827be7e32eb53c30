"""The console in a real browser: headless Debian Chromium driven by Playwright against ``facekeeper serve`` in
a child process, the camera fed by Chromium's fake device from a volunteer's committed photo.

Playwright's own browser download cannot work here (and is never run): the launch names /usr/bin/chromium,
which ``make test`` installs from Debian. Screenshots of every page go to the test's temporary folder (and,
with ``FACEKEEPER_CONSOLE_SHOTS=DIR``, as small PNGs to DIR: that is how docs/console/ is made). The tests
run in order and share one server and one browser, to keep the run short; the pages that need no erased
person (the QR credential, calibration, gates and liveness) run before the self-service withdrawal.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from facekeeper.api.server import ServerProcess
from facekeeper.api.tenants import Layout
from facekeeper.gate.runner import GateMetrics, status_path, write_status
from facekeeper.privacy import Actor
from facekeeper.service import Service
from tests.conftest import LONDON, london
from tests.web.conftest import PASSWORDS, make_root

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed ('make test'"
                                                                " installs it as root)")]
sync_api = pytest.importorskip("playwright.sync_api")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic", "--use-fake-device-for-media-stream",
         "--use-fake-ui-for-media-stream"]
VIEWPORT = {"width": 1024, "height": 768}  # a tablet at the enrolment desk, landscape


def y4m_from_photo(photo: Path, out: Path, frames: int = 2) -> Path:
    """A 640x480 YUV4MPEG2 (4:2:0) clip of ``photo`` letterboxed: what the fake camera plays in a loop."""
    img = Image.open(photo).convert("RGB")
    img.thumbnail((480, 480))
    frame = Image.new("RGB", (640, 480), (40, 40, 40))
    frame.paste(img, ((640 - img.width) // 2, (480 - img.height) // 2))
    ycc = np.asarray(frame.convert("YCbCr"), dtype=np.uint8)
    y = ycc[:, :, 0]
    cb = ycc[:, :, 1].reshape(240, 2, 320, 2).mean(axis=(1, 3)).astype(np.uint8)
    cr = ycc[:, :, 2].reshape(240, 2, 320, 2).mean(axis=(1, 3)).astype(np.uint8)
    with out.open("wb") as f:
        f.write(b"YUV4MPEG2 W640 H480 F5:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            f.write(b"FRAME\n" + y.tobytes() + cb.tobytes() + cr.tobytes())
    return out


class Shots:
    """Screenshots as test artefacts; small palette PNGs for the docs when FACEKEEPER_CONSOLE_SHOTS is set."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        docs = os.environ.get("FACEKEEPER_CONSOLE_SHOTS")
        self.docs = Path(docs) if docs else None

    def take(self, page: Any, name: str, part: Any = None) -> Path:
        """The whole page, or only ``part`` (a locator) when the page is longer than a screenshot shows."""
        path = self.folder / f"{name}.png"
        if part is None:
            page.screenshot(path=str(path), full_page=True)
        else:
            part.screenshot(path=str(path))
        if self.docs is not None:
            self.docs.mkdir(parents=True, exist_ok=True)
            img = Image.open(path).convert("RGB")
            img = img.crop((0, 0, img.width, min(img.height, 1400)))
            img.thumbnail((820, 1400))
            img.quantize(colors=48, method=Image.Quantize.MEDIANCUT).save(self.docs / f"{name}.png", optimize=True)
        return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Layout, str]]:
    base = tmp_path_factory.mktemp("console")
    layout = make_root(base)
    with ServerProcess(layout, args=["--in-process"], log=base / "serve.log") as server:
        yield layout, server.url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    clip = y4m_from_photo(london("004"), tmp_path_factory.mktemp("camera") / "volunteer-004.y4m")
    profile = tmp_path_factory.mktemp("chromium-profile")
    pw = sync_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                               args=[*FLAGS, f"--use-file-for-fake-video-capture={clip}"])
        yield b
        b.close()
    finally:
        pw.stop()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Shots:
    return Shots(tmp_path_factory.mktemp("screenshots"))


STATE: dict[str, Any] = {}


def signed_in(browser: Any, url: str, name: str, tenant: str = "acme", shots: Shots | None = None) -> Any:
    context = browser.new_context(viewport=VIEWPORT, base_url=url, permissions=["camera"])
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"/console/login?tenant={tenant}")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    if shots is not None:
        shots.take(page, "login")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(f"/console/{tenant}$"))
    return page


def test_an_operator_enrols_a_consenting_volunteer_from_the_camera(site: tuple[Layout, str], browser: Any,
                                                                     shots: Shots) -> None:
    layout, url = site
    page = signed_in(browser, url, "olga", shots=shots)
    page.get_by_role("navigation").get_by_role("link", name="Enrolment desk").click()
    page.get_by_label("The person has read the notice").check()
    page.get_by_label("Subject id").fill("004")
    page.get_by_label("Display name").fill("Volunteer 004")
    page.locator("input[name=purposes][value=access-control]").check()
    page.get_by_label("Reference of the record").fill("form 2026-004")
    page.get_by_role("button", name="Start camera").click()
    page.get_by_role("button", name="Take photo").click()
    quality = page.locator("#quality")
    quality.filter(has_text="good to enrol").wait_for()
    shots.take(page, "enrolment-desk")
    page.get_by_role("button", name="Record consent and enrol").click()
    page.get_by_role("heading", name="Enrolled").wait_for()
    assert "1 protected template" in page.locator("main").inner_text()
    STATE["code"] = page.locator("#ref-code").inner_text()
    STATE["pin"] = page.locator("#ref-pin").inner_text()
    shots.take(page, "enrolled")
    STATE["operator"] = page
    with Service.open(layout.data_dir("acme")) as svc:
        assert [s.subject_id for s in svc.gallery.subjects()] == ["004"]


def test_the_test_page_identifies_them_and_answers_unknown_for_a_stranger(site: tuple[Layout, str],
                                                                          shots: Shots) -> None:
    page = STATE["operator"]
    page.get_by_role("navigation").get_by_role("link", name="Test page").click()
    page.get_by_label("Photo").set_input_files(str(london("004", "smiling")))
    page.get_by_role("button", name="Test").click()
    assert page.locator("#decision").inner_text() == "Match: 004"
    shots.take(page, "test-page")
    page.get_by_label("Photo").set_input_files(str(london("009")))
    page.get_by_role("button", name="Test").click()
    assert page.locator("#decision").inner_text() == "Unknown"
    page.get_by_role("navigation").get_by_role("link", name="Subjects").click()
    assert "004" in page.locator("table").inner_text() and "live" in page.locator("table").inner_text()
    shots.take(page, "subjects")
    page.get_by_role("link", name="004").click()
    page.get_by_role("heading", name="Subject 004").wait_for()
    shots.take(page, "subject")


def test_an_auditor_sees_those_entries_and_cannot_enrol(site: tuple[Layout, str], browser: Any,
                                                        shots: Shots) -> None:
    page = signed_in(browser, url=site[1], name="audrey")
    shots.take(page, "home-auditor")
    assert "Enrolment desk" not in page.locator("nav").inner_text()
    page.get_by_role("navigation").get_by_role("link", name="Audit").click()
    assert page.locator("#chain").inner_text().startswith("Intact")
    page.get_by_label("Actor contains").fill("console:olga")
    page.get_by_role("button", name="Filter").click()
    table = page.locator("#audit-table").inner_text()
    assert "enroll" in table and "consent.grant" in table and "identify" in table
    shots.take(page, "audit")
    page.get_by_role("navigation").get_by_role("link", name="Compliance").click()
    page.get_by_role("heading", name="Compliance report").wait_for()
    shots.take(page, "compliance")
    page.get_by_role("navigation").get_by_role("link", name="Calibration & license").click()
    assert "valid" in page.locator("#license-state").inner_text()  # the page's shot comes with an eval recorded
    response = page.goto("/console/acme/enrol")  # not in the auditor's menu, and refused if typed in
    assert response is not None and response.status == 403
    shots.take(page, "refused")
    csrf = page.goto("/console/acme") and page.locator("header input[name=csrf]").get_attribute("value")
    photo = {"name": "p.jpg", "mimeType": "image/jpeg", "buffer": london("005").read_bytes()}
    posted = page.request.post(f"{site[1]}/console/acme/enrol", multipart={
        "csrf": str(csrf), "subject_id": "005", "purposes": "access-control", "method": "signature",
        "evidence": "form 5", "notice_read": "on", "photos": photo})
    assert posted.status == 403 and "the auditor role may not" in posted.text()
    page.goto("/console/acme/audit?actor=console:audrey")
    assert "refused:forbidden" in page.locator("#audit-table").inner_text()


def test_the_admin_pages(site: tuple[Layout, str], browser: Any, shots: Shots) -> None:
    page = signed_in(browser, url=site[1], name="ada")
    page.get_by_role("navigation").get_by_role("link", name="Administration").click()
    page.get_by_role("button", name="Create key").click()
    assert page.locator("#new-key").inner_text().startswith("fkapi1.")
    shots.take(page, "admin")


def test_someone_who_declines_a_face_gets_a_qr_code_that_a_reader_scans(site: tuple[Layout, str], browser: Any,
                                                                        shots: Shots, tmp_path: Path) -> None:
    page = signed_in(browser, site[1], "olga")
    page.get_by_role("navigation").get_by_role("link", name="Enrolment desk").click()
    page.get_by_label("The person has read the notice").check()
    page.get_by_label("Subject id").fill("visitor-8")
    page.locator("input[name=purposes][value=access-control]").check()
    page.get_by_label("Reference of the record").fill("form 2026-008")
    page.locator("#decline").check()
    page.locator("select[name=kind]").select_option("qr")
    page.get_by_role("button", name="Record consent and enrol").click()
    page.get_by_role("heading", name="Credential issued").wait_for()
    token = page.locator(".credential .secret").inner_text().strip()
    shots.take(page, "qr-credential")
    seen = tmp_path / "qr.png"
    page.locator("svg.qr").screenshot(path=str(seen))
    decoded, _, _ = cv2.QRCodeDetectorAruco().detectAndDecode(cv2.imread(str(seen), cv2.IMREAD_GRAYSCALE))
    assert decoded == token  # what Chromium drew scans back to the token the person is given
    with Service.open(site[0].data_dir("acme")) as svc:
        assert svc.check_credential("access-control", token=token, actor=Actor("test", "admin"))[0] == "visitor-8"


def test_the_auditor_sees_the_calibration_in_force_and_the_last_eval_s_det_curve(
        site: tuple[Layout, str], browser: Any, shots: Shots, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from facekeeper.cli.main import app

    layout, url = site
    volunteers = tmp_path / "volunteers"
    for person in ("001", "002", "003", "004", "005", "006"):
        shutil.copytree(LONDON / person, volunteers / person)
    result = CliRunner().invoke(app, ["--home", str(layout.data_dir("acme")), "eval", str(volunteers), "--out",
                                      str(tmp_path / "report.md"), "--no-plot", "--modes", "fast", "--name",
                                      "six London volunteers", "--deployment"])
    assert result.exit_code == 0, result.output
    page = signed_in(browser, url, "audrey")
    page.get_by_role("navigation").get_by_role("link", name="Calibration & license").click()
    assert "valid" in page.locator("#license-state").inner_text()
    assert "signed by vendor key" in page.locator("#bundle").inner_text()
    assert "six London volunteers" in page.locator("#eval-source").inner_text()
    assert page.locator("svg[aria-label^='DET curve'] polyline").count() == 1
    shots.take(page, "calibration-license")
    shots.take(page, "last-eval", page.locator("section[aria-labelledby=eval-h]"))


def test_the_admin_sees_gates_and_liveness(site: tuple[Layout, str], browser: Any, shots: Shots) -> None:
    layout, url = site
    data, now = layout.data_dir("acme"), time.time()
    write_status(status_path(data, "main-entrance"), GateMetrics(
        "main-entrance", "rtsp://camera-1/stream", started_at=now - 3600, updated_at=now, connected=True,
        frames=53_280, frames_per_second=14.8, decode_errors=3, tracks_started=41, tracks_active=1,
        tracks_without_match=6, decisions={"opened": 35, "unknown": 6}, door_answers={"granted": 35},
        latency_sum=11.2, latency_count=41))
    page = signed_in(browser, url, "ada")
    page.get_by_role("navigation").get_by_role("link", name="Administration").click()
    page.locator("select[name=role]").first.select_option("device")
    page.locator("select[name=purpose]").select_option("payment")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").inner_text().strip()
    till = page.request.post(f"{url}/v1/liveness/sessions", headers={"Authorization": f"Bearer {key}"},
                             data={"purpose": "payment"})  # a till opens a session, through the server
    assert till.status == 201, till.text()
    page.get_by_role("navigation").get_by_role("link", name="Gates & liveness").click()
    assert "14.8" in page.locator("main").inner_text()
    assert page.locator("#liveness-open").inner_text() == "1"
    shots.take(page, "devices")

def test_a_person_withdraws_through_the_self_service_page_and_the_face_is_gone(site: tuple[Layout, str],
                                                                                browser: Any, shots: Shots) -> None:
    layout, url = site
    context = browser.new_context(viewport=VIEWPORT, base_url=url)
    page = context.new_page()
    page.goto("/me")
    page.get_by_label("Reference code").fill(STATE["code"])
    page.get_by_label("PIN").fill(STATE["pin"])
    shots.take(page, "self-service-sign-in")
    page.get_by_role("button", name="Open my page").click()
    assert "1 protected template" in page.locator("#face-state").inner_text()
    shots.take(page, "self-service")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Withdraw").click()
    assert "erased at once" in page.locator("#erased").inner_text()
    shots.take(page, "self-service-erased")
    with Service.open(layout.data_dir("acme")) as svc:
        assert svc.gallery.store.subject_count() == 0
    operator = STATE["operator"]
    operator.get_by_role("navigation").get_by_role("link", name="Test page").click()
    operator.get_by_label("Photo").set_input_files(str(london("004", "smiling")))
    operator.get_by_role("button", name="Test").click()
    assert operator.locator("#decision").inner_text() == "Unknown"


def test_a_forged_post_and_a_cookie_of_another_tenant_are_refused(site: tuple[Layout, str], browser: Any) -> None:
    url = site[1]
    operator = STATE["operator"]
    forged = operator.request.post(f"{url}/console/acme/subject/erase", form={"id": "004", "csrf": "forged"})
    assert forged.status == 403 and "security token" in forged.text()
    globex = signed_in(browser, url, "gil", tenant="globex")
    stolen = [c for c in globex.context.cookies() if c["name"] == "fk_console"]
    thief = browser.new_context(viewport=VIEWPORT, base_url=url)
    thief.add_cookies(stolen)
    page = thief.new_page()
    response = page.goto("/console/acme/subjects")
    assert response is not None and response.status == 403
    assert "another tenant" in page.get_by_role("alert").inner_text()

