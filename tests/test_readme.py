"""The README's quick start runs as written (keeps the README true to the code)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_quick_start_runs():
    text = README.read_text()
    match = re.search(r"## Quick start.*?```python\n(.*?)```", text, re.S)
    assert match, "README has a '## Quick start' section with a python block"
    out = subprocess.run(
        [sys.executable, "-c", match.group(1)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:3] == ["streamnb reply to hello", "requested", "cancelled"]
    assert "completed" in lines[4] and "cancelled" in lines[5]


def test_readme_names_both_setup_commands():
    text = README.read_text()
    assert "pip install -e . && jupyter lab notebooks/" in text
    assert "bash scripts/test.sh" in text


def named_tests_exist(section: str) -> tuple[int, int]:
    """Every ``file::test`` a table of ``section`` names is a test function of that file.

    Returns (rows, tests checked)."""
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    checked = 0
    for row in rows:
        checked_by = row.rsplit("|", 2)[-2]
        current = None
        for ref in re.findall(r"`([^`]+)`", checked_by):
            path, _, name = ref.partition("::")
            if path.endswith(".py"):
                current = README.parent / "tests" / path.removeprefix("tests/")
                assert current.exists(), ref
            if not name:
                continue
            assert current is not None, ref
            pattern = re.escape(name).replace(r"\*", r"\w*")
            source = current.read_text()
            assert re.search(rf"^(async )?def {pattern}\(", source, re.M), (current.name, name)
            checked += 1
    return len(rows), checked


def test_readme_guarantees_name_tests_that_exist():
    """Every test the Guarantees table names is a test function of that test file."""
    section = README.read_text().split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    rows, checked = named_tests_exist(section)
    assert rows >= 15
    assert checked >= 30


def test_readme_scaling_out_names_tests_that_exist():
    """The same for the "Scaling out" section's table (the PostgreSQL ledger)."""
    section = README.read_text().split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    rows, checked = named_tests_exist(section)
    assert rows >= 7
    assert checked >= 10
