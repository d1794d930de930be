"""Run every streamnb benchmark and write ``bench/results.json`` (and the README table).

    python -m bench.run --quick            # about a minute per suite; what CI could afford
    python -m bench.run                    # full sizes (the README figures)
    python -m bench.run --only core,server # a subset
    python -m bench.run --readme           # also rewrite README.md's performance table

The side-by-side comparison with other ways to stream into a notebook takes tens of
minutes and has its own command, ``python -m bench.bench_peers`` (``bench/bench_peers.py``).
Its figures (suite ``peers``) are kept in ``results.json`` when this command rewrites it,
and ``--readme`` shows them and its table (``bench/peers_results.json``) if present.

The ``postgres`` suite (``bench/bench_postgres.py``) starts a throwaway PostgreSQL
server when psycopg and the server binaries are there (or uses
``STREAMNB_BENCH_DSN``), and otherwise prints why it produced no figure.

Each suite module exposes ``run(quick) -> list[Figure]`` and prints one JSON line per
figure (``bench/common.py``). ``results.json`` holds one entry per figure: ``name,
value, unit, baseline, ratio, target, meets_target`` plus ``note``, the suite, the
machine and the command. Suites run in this process one after another; a suite that
fails is reported and the others still run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from bench.common import Figure, machine

ROOT = Path(__file__).resolve().parent.parent
SUITES = ["core", "providers", "server", "rooms", "widget", "markdown", "postgres"]
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
PEERS_DETAILS = ROOT / "bench" / "peers_results.json"


def stored_peers(results: Path) -> list[dict]:
    """The figures ``python -m bench.bench_peers`` last stored in ``results`` (suite peers)."""
    if not results.exists():
        return []
    return [e for e in json.loads(results.read_text()) if e.get("suite") == "peers"]


def run_suite(name: str, quick: bool) -> list[Figure]:
    module = importlib.import_module(f"bench.bench_{name}")
    figures: list[Figure] = module.run(quick)
    return figures


def fmt(v: float | None) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{int(v):,}"


def table(entries: list[dict], command: str) -> str:
    def by(entry: dict) -> str:
        other = entry.get("command", command)
        return "" if other == command else f" (by `{other}`)"

    lines = [
        f"Produced by `{command}` on {entries[0]['machine'] if entries else machine()}.",
        "",
        "| figure | value | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| `{e['name']}` {e['note']}{by(e)} | {fmt(e['value'])} {e['unit']} "
        f"| {fmt(e['baseline'])} | {fmt(e['ratio'])} | {e['target']} "
        f"| {'yes' if e['meets_target'] else '**no**'} |"
        for e in entries
    )
    return "\n".join(lines)


def update_readme(text_table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = f"{BEGIN}\n{text_table}\n{END}"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} markers")
    readme.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (about a minute per suite)")
    p.add_argument("--only", default=",".join(SUITES), help="comma-separated suites")
    p.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    p.add_argument("--readme", action="store_true", help="rewrite README.md's table")
    args = p.parse_args(argv)
    command = "python -m bench.run" + (" --quick" if args.quick else "")
    entries: list[dict] = []
    failed: list[str] = []
    for name in [s.strip() for s in args.only.split(",") if s.strip()]:
        start = time.perf_counter()
        print(f"== bench_{name}", file=sys.stderr, flush=True)
        try:
            figures = run_suite(name, args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        entries.extend(
            {**asdict(f), "suite": name, "machine": machine(), "command": command} for f in figures
        )
        print(f"== bench_{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    entries.extend(stored_peers(Path(args.out)))
    Path(args.out).write_text(json.dumps(entries, indent=2) + "\n")
    print(f"wrote {args.out} ({len(entries)} figures)", file=sys.stderr)
    if args.readme:
        update_readme(table(entries, command))
        if PEERS_DETAILS.exists():
            from bench.bench_peers import readme_table
            from bench.bench_peers import update_readme as update_peers_readme

            update_peers_readme(readme_table(json.loads(PEERS_DETAILS.read_text())))
    missed = [e["name"] for e in entries if not e["meets_target"]]
    if missed:
        print("targets missed: " + ", ".join(missed), file=sys.stderr)
    if failed:
        print("suites that failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
