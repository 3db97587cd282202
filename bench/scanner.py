"""Placeholder-scanner throughput: on this repository, then on a generated 50 MB mixed-language corpus.

Run it as ``.venv/bin/python bench/scanner.py [--corpus-mb 50] [--seed 4] [--repeat 3]``. It prints
MB/s (10^6 bytes of scanned source per second, best of ``--repeat`` runs) and the findings per
severity, so a change that makes the scanner faster by finding less shows up in the same output.

The corpus is written to a temporary directory and deleted afterwards. It is deterministic for a
seed and made to look like real code: ordinary comments, documentation comments, string literals
full of the marker words (data, which must not be reported), and about one file in ten carrying a
real marker comment or stub, which forces the scanner through its full lexing path on those files.
Compare figures only within one run: this VM's speed drifts (see DESIGN.md, known pitfalls).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tasks.review.gates.placeholders import ScanReport, scan_paths  # noqa: E402

WORDS = ("task", "worker", "lease", "attempt", "verdict", "gate", "audit", "queue", "retry", "cursor", "scope")
# Marker words inside string literals and identifiers: data, never findings.
DATA_PHRASES = ("todo", "TODO: implement", "not yet implemented", "placeholder", "quick fix", "magic number")
MARKER_COMMENTS = (
    "TODO: implement paging",
    "FIXME: handle the timeout",
    "PLACEHOLDER: fill in",
    "stub implementation for now",
    "temporary workaround for the flaky client",
    "hardcoded for now, make configurable",
    "in a real implementation we would stream this",
)


def _ident(rng: random.Random) -> str:
    return "_".join(rng.sample(WORDS, 2))


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(4, 10)))


def _python(rng: random.Random, marked: bool) -> str:
    out = ['"""Module about ' + _sentence(rng) + '."""', "from __future__ import annotations", ""]
    for _ in range(rng.randint(20, 40)):
        name = _ident(rng)
        out += [
            f"def {name}(value: int, label: str = {rng.choice(DATA_PHRASES)!r}) -> dict[str, int]:",
            f'    """Return the {_sentence(rng)}; TODO markers here are documentation."""',
            f"    # {_sentence(rng)}",
            f"    status = {rng.choice(DATA_PHRASES)!r}  # {_sentence(rng)}",
            f"    todo_list = [value * {rng.randint(2, 99)}, len(label)]",
            "    try:",
            "        total = sum(todo_list) // 3",
            "    except ZeroDivisionError:",
            "        pass",
            f"    return {{'{name}': total, 'updated_at': {rng.randint(1, 10**6)}, 'status': len(status)}}",
            "",
        ]
    if marked:
        out.insert(rng.randrange(3, len(out)), f"# {rng.choice(MARKER_COMMENTS)}")
        out += ["def unfinished():", "    raise NotImplementedError", ""]
    return "\n".join(out) + "\n"


def _c_like(rng: random.Random, marked: bool, *, fn: str, throw: str) -> str:
    out = [f"/** {_sentence(rng)}. TODO markers in docs are prose. */"]
    for _ in range(rng.randint(20, 40)):
        name = _ident(rng)
        out += [
            f"/**\n * {_sentence(rng)}\n * @param value {_sentence(rng)}\n */",
            fn.format(name=name),
            f"  // {_sentence(rng)}",
            f'  let label = "{rng.choice(DATA_PHRASES)}"; /* {_sentence(rng)} */',
            f"  let ratio = value / {rng.randint(2, 99)};",
            f'  let url = "https://example.org/{name}#anchor";',
            "  return ratio + label.length;",
            "}",
            "",
        ]
    if marked:
        out.insert(rng.randrange(1, len(out)), f"// {rng.choice(MARKER_COMMENTS)}")
        out += [fn.format(name="unfinished"), f"  {throw}", "}"]
    return "\n".join(out) + "\n"


def _shell(rng: random.Random, marked: bool) -> str:
    out = ["#!/usr/bin/env bash", "set -euo pipefail"]
    for _ in range(rng.randint(30, 60)):
        out += [
            f"# {_sentence(rng)}",
            f'{_ident(rng).upper()}="{rng.choice(DATA_PHRASES)}"  # {_sentence(rng)}',
            f"echo \"${{#{_ident(rng)}}} {_sentence(rng)}\" | grep -c '{rng.choice(WORDS)}' || true",
            "cat <<EOF",
            f"# {rng.choice(MARKER_COMMENTS)} (heredoc body: data)",
            "EOF",
        ]
    if marked:
        out.insert(rng.randrange(2, len(out)), f"# {rng.choice(MARKER_COMMENTS)}")
    return "\n".join(out) + "\n"


def _yaml(rng: random.Random, marked: bool) -> str:
    out = ["# " + _sentence(rng), "jobs:"]
    for _ in range(rng.randint(40, 80)):
        out += [
            f"  {_ident(rng)}:",
            f'    name: "{rng.choice(DATA_PHRASES)} # not a comment"',
            f"    steps: {rng.randint(1, 9)}  # {_sentence(rng)}",
        ]
    if marked:
        out.insert(rng.randrange(2, len(out)), f"# {rng.choice(MARKER_COMMENTS)}")
    return "\n".join(out) + "\n"


GENERATORS: dict[str, Callable[[random.Random, bool], str]] = {
    ".py": _python,
    ".ts": lambda rng, m: _c_like(
        rng, m, fn="export function {name}(value: number): number {{", throw='throw new Error("TODO");'
    ),
    ".rs": lambda rng, m: _c_like(rng, m, fn="pub fn {name}(value: u64) -> u64 {{", throw="todo!()"),
    ".go": lambda rng, m: _c_like(rng, m, fn="func {name}(value int) int {{", throw='panic("not implemented")'),
    ".java": lambda rng, m: _c_like(
        rng, m, fn="  public int {name}(int value) {{", throw='throw new UnsupportedOperationException("TODO");'
    ),
    ".c": lambda rng, m: _c_like(rng, m, fn="int {name}(int value) {{", throw="return -1;"),
    ".sh": _shell,
    ".yaml": _yaml,
}


def generate_corpus(root: Path, *, megabytes: int, seed: int) -> int:
    """Write mixed-language files under ``root`` until ``megabytes`` MB; returns the bytes written."""
    rng = random.Random(seed)
    target, written, index = megabytes * 10**6, 0, 0
    extensions = sorted(GENERATORS)
    while written < target:
        ext = extensions[index % len(extensions)]
        data = GENERATORS[ext](rng, rng.random() < 0.1).encode()
        folder = root / f"pkg{index // 200:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"mod{index:05d}{ext}").write_bytes(data)
        written += len(data)
        index += 1
    return written


def measure(paths: list[Path], repeat: int) -> tuple[float, ScanReport]:
    best, report = float("inf"), ScanReport()
    for _ in range(repeat):
        started = time.perf_counter()
        report = scan_paths(paths)
        best = min(best, time.perf_counter() - started)
    return best, report


def _print(label: str, seconds: float, report: ScanReport) -> None:
    megabytes = report.bytes_scanned / 10**6
    print(
        f"{label}: {report.files_scanned} files, {megabytes:.2f} MB in {seconds:.3f} s = "
        f"{megabytes / seconds:.1f} MB/s; findings {report.counts}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-mb", type=int, default=50)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    seconds, report = measure([REPO], args.repeat)
    _print("repository (excluding .venv, var, .git)", seconds, report)

    with tempfile.TemporaryDirectory(prefix="scanner-bench-") as tmp:
        started = time.perf_counter()
        size = generate_corpus(Path(tmp), megabytes=args.corpus_mb, seed=args.seed)
        print(f"generated {size / 10**6:.1f} MB corpus in {time.perf_counter() - started:.1f} s (seed {args.seed})")
        seconds, report = measure([Path(tmp)], args.repeat)
        _print(f"generated corpus ({args.corpus_mb} MB, mixed languages)", seconds, report)


if __name__ == "__main__":
    main()
