"""A real federated round: a SuperLink and SuperNodes as processes on loopback, SecAgg+ summing the sites.

Needs the Flower environment (``make flower-env`` → ``.venv-flower``, or ``FACEKEEPER_FLOWER_BIN``).
The sites connect through a wiretap, a byte-level proxy in front of the SuperLink, so the test sees every
byte the vendor receives.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facekeeper import evaluation
from facekeeper.bundle import manifest
from facekeeper.engine import Engine
from facekeeper.errors import ConsentRequired, FederationError
from facekeeper.federation.flower import ENV_FLOWER_BIN, free_port
from facekeeper.federation.histogram import PROTOCOL, Layout, histogram
from facekeeper.federation.join import Federation
from facekeeper.federation.pairs import PairPlan
from facekeeper.publisher.cli import app as vendor_app
from facekeeper.publisher.federate import MIN_FALSE_MATCHES, Aggregate, tables_from_sum
from facekeeper.service import Service
from tests.conftest import network_namespace_available
from tests.federation.sites import site, synthetic_people

REPO = Path(__file__).resolve().parents[2]
FLOWER = Path(os.environ.get(ENV_FLOWER_BIN) or REPO / ".venv-flower" / "bin")
BIN = Path(sys.executable).parent
LAYOUT = Layout(("fast",))

pytestmark = pytest.mark.skipif(not (FLOWER / "flower-supernode").exists(),
                                reason="needs the Flower environment: make flower-env")


class Wiretap:
    """A TCP proxy on loopback that keeps every byte clients send to ``port``."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sent = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while data := src.recv(65536):
                if record:
                    with self._lock:
                        self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def configure(svc: Service, *, epsilon: float, yearly: float) -> None:
    svc.settings.federation.round_epsilon = epsilon
    svc.settings.federation.yearly_epsilon = yearly
    svc.settings.federation.flower_bin = str(FLOWER)
    svc.settings.save()


def exact_release(svc: Service) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The site's noise-free release, and its raw impostor and genuine distances (for the central table)."""
    f = svc.settings.federation
    d = svc.calibration.distances(svc.calibration.mode("fast"), PairPlan(f.partners, f.per_partner, f.genuine),
                                  svc.clock())
    bins = PROTOCOL["fast"][1]
    return LAYOUT.join({"fast": (histogram(d.impostor, bins), histogram(d.genuine, bins))}), d.impostor, d.genuine


def facekeeper(home: Path, *args: str, timeout: float = 300) -> subprocess.Popen[str]:
    return subprocess.Popen([str(BIN / "facekeeper"), "--home", str(home), "--json", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_a_round_sums_the_sites_exactly_and_the_vendor_sees_only_the_sum(tmp_path: Path, engine: Engine) -> None:
    rng = np.random.default_rng(7)
    homes = []
    for name, people, photos in (("a", 60, 5), ("b", 55, 4)):
        svc = site(tmp_path / name, engine, synthetic_people(rng, people, photos), prefix=name)
        configure(svc, epsilon=math.inf, yearly=math.inf)  # no noise: the sum must equal the pooled pairs
        homes.append(svc.settings.data_dir)
        svc.close()
    no_consent = site(tmp_path / "c", engine, synthetic_people(rng, 20, 3), consent=False, prefix="c")
    configure(no_consent, epsilon=1.0, yearly=4.0)
    no_consent.close()

    port = free_port()
    vendor_work = tmp_path / "vendor"
    vendor = subprocess.Popen([str(BIN / "facekeeper-vendor"), "federate", "serve", "--sites", "2", "--work",
                               str(vendor_work), "--port", str(port), "--insecure", "--timeout", "240",
                               "--epsilon", "inf", "--flower", str(FLOWER)],
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tap = Wiretap(port)
    try:
        refused = facekeeper(no_consent.settings.data_dir, "federate", "join", "--superlink",
                             f"127.0.0.1:{tap.port}", "--insecure")
        out, _ = refused.communicate(timeout=120)
        assert refused.returncode == ConsentRequired.exit_code, out
        assert not (no_consent.settings.data_dir / "federation").exists()  # no SuperNode was ever started

        joins = [facekeeper(home, "federate", "join", "--superlink", f"127.0.0.1:{tap.port}", "--insecure",
                            "--timeout", "240") for home in homes]
        results = []
        for j in joins:
            out, err = j.communicate(timeout=300)
            assert j.returncode == 0, out + err[-3000:]
            results.append(json.loads(out))
        v_out, v_err = vendor.communicate(timeout=120)
        assert vendor.returncode == 0, v_out + v_err[-3000:]
    finally:
        tap.close()
        if vendor.poll() is None:
            vendor.terminate()  # serve stops its SuperLink on SIGTERM
            vendor.wait(30)
    assert all(r["completed"] and r["stages"][-1] == "unmask" for r in results)

    exact, impostor, genuine = [], [], []
    for home in homes:
        with Service.open(home, engine=engine) as svc:
            vec, imp, gen = exact_release(svc)
            exact.append(vec)
            impostor.append(imp)
            genuine.append(gen)
            rounds = [(e.action, e.outcome) for e in svc.privacy.audit.entries() if e.action.startswith("federation")]
            assert rounds == [("federation.round", "released"), ("federation.round.end", "completed")]
            released = next(e for e in svc.privacy.audit.entries() if e.action == "federation.round")
            assert released.detail["sha256"] == results[homes.index(home)]["sent"]["sha256"]
            assert svc.privacy.audit.verify().ok

    agg = Aggregate.from_dict(json.loads((vendor_work / "aggregate.json").read_text()))
    assert agg.sites == 2 and np.array_equal(agg.vector, exact[0] + exact[1])

    # what the vendor received: masked vectors, never a site's own counts
    assert len(tap.sent) > 10_000
    for vec in exact:
        nonzero = np.flatnonzero(vec)
        window = vec[nonzero[0] : nonzero[0] + 16]
        for dtype in ("<f8", "<i8", "<i4", "<f4"):
            assert window.astype(dtype).tobytes() not in tap.sent

    # the federated table is the central table of the pooled pairs, to within one bin
    tables, provenance = tables_from_sum(agg, epsilon=math.inf, sensitivity=PairPlan(8, 4, 6).sensitivity)
    table = tables["dlib-resnet-v1"]
    pooled_imp, pooled_gen = np.concatenate(impostor), np.concatenate(genuine)
    assert table.impostor_pairs == len(pooled_imp) and provenance["sites"] == 2
    for fmr, threshold in table.points:
        central = evaluation.operating_point(pooled_gen, pooled_imp, fmr, MIN_FALSE_MATCHES)
        assert central.threshold is not None
        assert abs(threshold - central.threshold) <= PROTOCOL["fast"][1].width

    # signed into the next bundle version, provenance included
    calibration = tmp_path / "calibration.json"
    shutil.copy(manifest.default_calibration_path(), calibration)
    doc = json.loads(calibration.read_text())
    doc["tables"] = [table.to_dict() if t["model_id"] == table.model_id else t for t in doc["tables"]]
    doc["provenance"] = provenance
    calibration.write_text(json.dumps(doc))
    runner = CliRunner()
    keys = tmp_path / "keys"
    assert runner.invoke(vendor_app, ["keygen", "--out", str(keys)]).exit_code == 0
    r = runner.invoke(vendor_app, ["bundle", "sign", "--key", str(keys / "vendor_private.pem"), "--bundle-dir",
                                   str(tmp_path / "bundle"), "--calibration", str(calibration), "--trusted",
                                   str(keys / "vendor_public.pem")])
    assert r.exit_code == 0, r.output
    signed = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert signed["calibration"]["provenance"]["sites"] == 2
    assert signed["calibration"]["provenance"]["delta"] == 0.0


@pytest.mark.slow
@pytest.mark.skipif(not network_namespace_available(), reason="needs unshare -n (root or user namespaces) and ip")
def test_the_demo_round_runs_in_an_empty_network_namespace(tmp_path: Path) -> None:
    """Vendor and two sites in a namespace with loopback only: the round needs nothing beyond it."""
    script = f"ip link set lo up && exec {sys.executable} bench/federation.py --demo --workdir {tmp_path / 'run'}"
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, ENV_FLOWER_BIN: str(FLOWER)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "one round between 2 sites" in done.stdout and "audited release of" in done.stdout


@pytest.mark.slow
def test_a_round_that_does_not_complete_fails_on_both_sides(tmp_path: Path, engine: Engine) -> None:
    """flwr exits 0 whatever happens to the round: completion is judged by the sum and by the stages."""
    svc = site(tmp_path / "a", engine, synthetic_people(np.random.default_rng(3), 15, 3), prefix="a")
    configure(svc, epsilon=1.0, yearly=4.0)
    home = svc.settings.data_dir
    svc.close()
    port = free_port()
    vendor = subprocess.Popen([str(BIN / "facekeeper-vendor"), "federate", "serve", "--sites", "2", "--work",
                               str(tmp_path / "vendor"), "--port", str(port), "--insecure", "--timeout", "20",
                               "--flower", str(FLOWER)], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    alone = facekeeper(home, "federate", "join", "--superlink", f"127.0.0.1:{port}", "--insecure", "--timeout", "20")
    out, err = alone.communicate(timeout=120)
    v_out, v_err = vendor.communicate(timeout=120)
    assert alone.returncode == FederationError.exit_code and "did not complete" in out, out + err[-2000:]
    assert vendor.returncode == FederationError.exit_code and "did not complete" in v_err, v_out + v_err[-2000:]
    with Service.open(home, engine=engine) as svc:
        rounds = [(e.action, e.outcome) for e in svc.privacy.audit.entries() if e.action.startswith("federation")]
        assert rounds == [("federation.round", "released"), ("federation.round.end", "incomplete")]
        assert Federation(svc.settings, svc.privacy, svc.calibration).budget(svc.clock())["spent_last_365_days"] == 1


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a SuperLink certificate for 127.0.0.1: (certificate, key, CA certificate)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    folder.mkdir()

    def build(subject: x509.Name, issuer: x509.Name, public, signer, extension, critical: bool):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(hours=2)).add_extension(extension, critical=critical)
                .sign(signer, hashes.SHA256()))

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test vendor CA")])
    ca = build(ca_name, ca_name, ca_key.public_key(), ca_key, x509.BasicConstraints(ca=True, path_length=None), True)
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), ca_name, key.public_key(), ca_key,
                 san, False)
    paths = (folder / "superlink.pem", folder / "superlink.key", folder / "ca.pem")
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


@pytest.mark.slow
def test_a_round_over_tls_admits_registered_nodes_only_and_carries_no_plaintext(tmp_path: Path,
                                                                                engine: Engine) -> None:
    cert, key, ca = make_tls(tmp_path / "tls")
    rng = np.random.default_rng(21)
    registered = tmp_path / "node-keys"
    registered.mkdir()
    homes = []
    for name in ("a", "b", "rogue"):
        svc = site(tmp_path / name, engine, synthetic_people(rng, 20, 3), prefix=name)
        configure(svc, epsilon=1.0, yearly=4.0)
        homes.append(svc.settings.data_dir)
        svc.close()
        keygen = facekeeper(homes[-1], "federate", "keygen", "--out", str(tmp_path / name / "node"))
        assert keygen.wait(60) == 0
        if name != "rogue":
            shutil.copy(tmp_path / name / "node" / "supernode.pub", registered / f"{name}.pub")
    port = free_port()
    vendor = subprocess.Popen([str(BIN / "facekeeper-vendor"), "federate", "serve", "--sites", "2", "--work",
                               str(tmp_path / "vendor"), "--port", str(port), "--tls-cert", str(cert), "--tls-key",
                               str(key), "--tls-ca", str(ca), "--node-keys", str(registered), "--timeout", "240",
                               "--flower", str(FLOWER)], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tap = Wiretap(port)
    try:
        joins = [facekeeper(h, "federate", "join", "--superlink", f"127.0.0.1:{tap.port}", "--root-certificates",
                            str(ca), "--auth-key", str(h.parent / "node" / "supernode.key"), "--timeout",
                            "40" if h.parent.name == "rogue" else "240") for h in homes]
        outcomes = []
        for j in joins:
            out, err = j.communicate(timeout=300)
            outcomes.append((j.returncode, out, err))
        v_out, v_err = vendor.communicate(timeout=120)
        assert vendor.returncode == 0, v_out + v_err[-3000:]
    finally:
        tap.close()
        if vendor.poll() is None:
            vendor.terminate()
            vendor.wait(30)
    for code, out, err in outcomes[:2]:
        assert code == 0 and json.loads(out)["completed"], out + err[-3000:]
    assert outcomes[2][0] == FederationError.exit_code  # an unregistered node is never admitted
    assert json.loads((tmp_path / "vendor" / "aggregate.json").read_text())["sites"] == 2
    assert len(tap.sent) > 10_000
    assert b"fleet" not in tap.sent and b"HTTP/1.1" not in tap.sent  # TLS from the first byte on
