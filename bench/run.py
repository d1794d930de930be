"""Run every streamnb benchmark and write ``bench/results.json`` (and the README table).

    python -m bench.run --quick            # about a minute per suite; what CI could afford
    python -m bench.run                    # full sizes (the README figures)
    python -m bench.run --only core,server # a subset
    python -m bench.run --readme           # also rewrite README.md's performance table

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
SUITES = ["core", "providers", "server", "widget", "markdown"]
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


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
    lines = [
        f"Produced by `{command}` on {entries[0]['machine'] if entries else machine()}.",
        "",
        "| figure | value | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| `{e['name']}` {e['note']} | {fmt(e['value'])} {e['unit']} | {fmt(e['baseline'])} "
        f"| {fmt(e['ratio'])} | {e['target']} | {'yes' if e['meets_target'] else '**no**'} |"
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
    Path(args.out).write_text(json.dumps(entries, indent=2) + "\n")
    print(f"wrote {args.out} ({len(entries)} figures)", file=sys.stderr)
    if args.readme:
        update_readme(table(entries, command))
    missed = [e["name"] for e in entries if not e["meets_target"]]
    if missed:
        print("targets missed: " + ", ".join(missed), file=sys.stderr)
    if failed:
        print("suites that failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
