"""Binder: the binder/ files alone make an environment that runs the tutorials under nbval,
and repo2docker (what mybinder.org runs) accepts the configuration.

No Docker here, so repo2docker only generates its Dockerfile (--no-build); the build itself
is reproduced in a fresh virtualenv: install binder/requirements.txt, run binder/postBuild
from the repository root (as repo2docker does), then `pytest --nbval notebooks/` with that
virtualenv's python. Both run on a copy of the files git knows about (tracked, or untracked
and not ignored), so a missing `git add` or a file that only exists here shows up.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.binder

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"

# Environment variables of this process that must not leak into the fresh environment.
_DROP_PREFIXES = ("PYTEST_", "COV_CORE_", "COVERAGE_", "CONDA_", "JUPYTER_", "IPYTHON", "MPL")
_DROP = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE"}


def _run(
    cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in its own process group; on timeout kill the whole group (kernels too)."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"timed out after {timeout} s: {' '.join(cmd)}\n{out[-6000:]}")
    finally:
        # anything the command left running in its group (e.g. a stray kernel)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}: {' '.join(result.args)}\n{result.stdout[-6000:]}"
    )
    return result.stdout


def _names(lines: list[str]) -> set[str]:
    reqs = (ln.split("#", 1)[0].strip() for ln in lines)
    return {canonicalize_name(Requirement(r).name) for r in reqs if r}


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository as git sees it (tracked + untracked-not-ignored files), in a tmp dir."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout of the repository")
    listed = _ok(
        _run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            timeout=60,
        )
    )
    dest = tmp_path_factory.mktemp("binder") / "streamnb"
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():  # tracked but deleted in the working tree: skip
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)  # keeps the executable bit
    return dest


def test_requirements_cover_the_package_dependencies() -> None:
    """postBuild installs streamnb with --no-deps, so requirements.txt must list its deps."""
    import tomllib  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"]) | {"nbval", "matplotlib", "pytest-asyncio"}
    listed = _names((BINDER / "requirements.txt").read_text().splitlines())
    assert wanted <= listed, f"missing from binder/requirements.txt: {sorted(wanted - listed)}"
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    post_build = BINDER / "postBuild"
    assert post_build.read_text().startswith("#!")
    assert post_build.stat().st_mode & stat.S_IXUSR, "binder/postBuild must be executable"


def test_repo2docker_accepts_the_configuration(repo_copy: Path) -> None:
    """repo2docker picks the binder/ files up and generates a Dockerfile (no image built)."""
    if importlib.util.find_spec("repo2docker") is None:  # not imported: it warns on import
        pytest.fail("jupyter-repo2docker is not installed (pip install jupyter-repo2docker)")
    out = _ok(
        _run(
            [
                *(sys.executable, "-m", "repo2docker"),
                *("--no-run", "--no-build", "--debug", str(repo_copy)),
            ],
            cwd=repo_copy.parent,
            timeout=120,
        )
    )
    assert "Picked Local content provider" in out, out[-3000:]
    assert "environment for python=3.11" in out, out[-3000:]  # binder/runtime.txt
    assert re.search(r'pip install --no-cache-dir -r "?binder/requirements\.txt', out), out
    assert "RUN ./binder/postBuild" in out, out


@pytest.mark.timeout(720)
def test_binder_environment_runs_the_notebooks(repo_copy: Path, tmp_path: Path) -> None:
    """Fresh venv + binder/requirements.txt + binder/postBuild, then nbval over notebooks/."""
    notebooks = sorted(p.name for p in (repo_copy / "notebooks").glob("*.ipynb"))
    assert notebooks, "no tutorial notebooks in notebooks/"
    venv = tmp_path / "venv"
    timings: dict[str, float] = {}

    def step(name: str, cmd: list[str], timeout: float) -> str:
        started = time.monotonic()
        out = _ok(_run(cmd, cwd=repo_copy, env=env, timeout=timeout))
        timings[name] = round(time.monotonic() - started, 1)
        return out

    env = {
        k: v for k, v in os.environ.items() if k not in _DROP and not k.startswith(_DROP_PREFIXES)
    }
    home = tmp_path / "home"  # fresh Jupyter/IPython/matplotlib config; pip's cache stays
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        "PYTHONNOUSERSITE": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_PROGRESS_BAR": "off",
        "JUPYTER_CONFIG_DIR": str(home / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(home / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(home / "jupyter-runtime"),
        "IPYTHONDIR": str(home / "ipython"),
        "MPLCONFIGDIR": str(home / "matplotlib"),
    }
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
        Path(env[name]).mkdir(parents=True)
    py = str(venv / "bin" / "python")

    step("venv", [sys.executable, "-m", "venv", str(venv)], timeout=120)
    # Binder images ship a current pip; the one bundled with the venv resolves this set ~2x slower
    step("pip", [py, "-m", "pip", "install", "-q", "--upgrade", "pip"], timeout=180)
    step(
        "requirements",
        [
            *(py, "-m", "pip", "install", "-q", "--prefer-binary", "--no-compile"),
            *("-r", "binder/requirements.txt"),
        ],
        timeout=480,
    )
    # as repo2docker does: from the repository root, executable bit forced
    post_build = repo_copy / "binder" / "postBuild"
    post_build.chmod(post_build.stat().st_mode | stat.S_IXUSR)
    step("postBuild", ["./binder/postBuild"], timeout=240)
    step("pip check", [py, "-m", "pip", "check"], timeout=60)

    # the package and the kernel both come from the fresh environment, not from this one
    where = step(
        "where",
        [
            py,
            "-c",
            "import shutil, streamnb; from jupyter_client.kernelspec import KernelSpecManager;"
            "argv0 = KernelSpecManager().get_kernel_spec('python3').argv[0];"
            "print(streamnb.__file__); print(shutil.which(argv0) or argv0)",
        ],
        timeout=60,
    ).splitlines()[-2:]
    assert Path(where[0]).is_relative_to(repo_copy), where
    assert Path(where[1]).is_relative_to(venv), f"kernel python is not the venv's: {where}"

    junit = tmp_path / "nbval.xml"
    out = step(
        "nbval",
        [
            *(py, "-m", "pytest", "--nbval", "notebooks/"),
            *("--nbval-sanitize-with", "notebooks/sanitize.cfg", "-p", "no:cacheprovider", "-q"),
            f"--junitxml={junit}",
        ],
        timeout=420,
    )
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    assert int(suite.get("failures", "0")) == int(suite.get("errors", "0")) == 0, out
    ran = {  # classname is "notebooks.01_output_only_stream.ipynb"
        case.get("classname", "").removeprefix("notebooks.")
        for case in suite.iter("testcase")
        if case.find("skipped") is None
    }
    missing = [nb for nb in notebooks if nb not in ran]
    assert not missing, f"notebooks not run: {missing}; cases: {sorted(ran)}\n{out[-3000:]}"
    print("binder venv steps (s):", timings)
    shutil.rmtree(venv, ignore_errors=True)  # ~0.5 GB; pytest keeps the last three tmp dirs
