"""Profiles behind ``bench/PROFILE.md`` (issue 16): where a flood of tokens into a
``StreamWidget`` spends the kernel's time, and the widget's start-up as the page sees it.

    python -m bench.profile_peers kernel [--tokens 50000]   # in-process, pyinstrument + cProfile
    python -m bench.profile_peers live [--tokens 50000]     # a real kernel: py-spy + page timelines

``kernel`` runs the runtime and the widget in this process, on the same handler as the
benchmark (``bench/peers_kernel.py``). The widget's comm serializes and signs every message
the way ipykernel does (``jupyter_client.Session.serialize``) and then drops it, so the
profile holds the kernel's whole cost of sending except the socket write. A recorder acks
the first delta as ``widget.js`` does (``bench_widget.CommRecorder``).

``live`` opens the benchmark's JupyterLab page (``bench_peers.PeersLab``), samples the
notebook's kernel with ``py-spy record --threads`` while the streamnb contender floods
``--tokens`` tokens five times, and prints the hottest frames (self and inclusive) and the
page's timeline of each run: ``execute_request`` -> busy -> ``execute_input`` ->
``comm_open`` -> the view in the DOM -> first delta frame -> first text -> full text (ms,
page clock), for the widget's first run in the page (cold: ESM not loaded yet) and after.
Needs the ``bench`` extra (``pip install -e ".[bench]"``: pyinstrument, py-spy).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import json
import pstats
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import jupyterlab_in_chromium

TOP = 25
PY_SPY_RATE_HZ = 500
PY_SPY_ATTACH_S = 1.0
LIVE_RUNS = 5
LIVE_CAP_S = 120.0


# --- in process --------------------------------------------------------------------------


def install_session_comm() -> None:
    """Make ipywidgets create comms that pay ipykernel's per-message cost (JSON + HMAC)."""
    import comm
    from comm.base_comm import BaseComm
    from jupyter_client.session import Session

    session = Session(key=b"streamnb-profile")

    class SessionComm(BaseComm):  # type: ignore[misc]
        def publish_msg(
            self,
            msg_type: str,
            data: Any = None,
            metadata: Any = None,
            buffers: Any = None,
            **keys: Any,
        ) -> None:
            content = dict(data=data or {}, comm_id=self.comm_id, **keys)
            msg = session.msg(msg_type, content=content, parent={}, metadata=metadata or {})
            session.serialize(msg)

    comm.create_comm = lambda *args, **kwargs: SessionComm(*args, **kwargs)


async def flood(n: int) -> dict[str, Any]:
    """``n`` tokens from the benchmark's handler into a StreamWidget, until settled."""
    from bench.bench_widget import CommRecorder
    from bench.peers_kernel import TOKENS_KIND, expected_text, streamnb_runtime
    from streamnb.widget import StreamWidget

    runtime = streamnb_runtime()
    t0 = time.perf_counter()
    session = await runtime.attach(TOKENS_KIND, {"n": n})
    widget = StreamWidget(session)
    recorder = CommRecorder(widget, ack=True)
    status = await widget.wait(timeout_s=300)
    elapsed = time.perf_counter() - t0
    ok = widget.text() == expected_text(n)
    widget.close()
    await runtime.aclose()
    return {
        "status": status,
        "text_ok": ok,
        "seconds": round(elapsed, 4),
        "tokens_per_s": round(n / elapsed),
        "messages": len(recorder.records),
    }


def profile_kernel(n: int) -> None:
    from pyinstrument import Profiler

    install_session_comm()
    plain = asyncio.run(flood(n))
    print(f"# {n:,} tokens, no profiler: {json.dumps(plain)}")
    profiler = Profiler(interval=0.0005)
    profiler.start()
    profiled = asyncio.run(flood(n))
    profiler.stop()
    print(f"# pyinstrument (0.5 ms sampling): {json.dumps(profiled)}\n")
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    cp = cProfile.Profile()
    cp.enable()
    counted = asyncio.run(flood(n))
    cp.disable()
    out = io.StringIO()
    pstats.Stats(cp, stream=out).sort_stats("tottime").print_stats(TOP)
    print(f"# cProfile, by own time (deterministic, slower): {json.dumps(counted)}")
    print(out.getvalue())


# --- a real kernel ---------------------------------------------------------------------


def kernel_pids(server: Any) -> list[int]:
    from tests.browser.conftest import _descendants

    pids = []
    for pid in _descendants(server.process.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ipykernel" in cmdline:
            pids.append(pid)
    return pids


#: frames of the harness's own requests between floods (reset, marks, cleanup): not counted
HARNESS_FRAMES = ("close_everything (", "marks_json (", "reset (")


def top_frames(raw: str) -> str:
    """Self and inclusive sample counts per frame of ``py-spy --format raw`` output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = harness = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if any(h in stack for h in HARNESS_FRAMES):
            harness += count
            continue
        frames = stack.split(";")
        threads[frames[0]] += count
        total += count
        # "function (file.py:line)": drop the line so one function is one row
        names = [f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in frames[1:]]
        if names:
            own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    lines = [
        f"{total} samples at {PY_SPY_RATE_HZ} Hz ({harness} more in the harness's own "
        "requests between floods, left out)",
        "",
        "threads:",
    ]
    lines += [f"  {c:6d} {100 * c / total:5.1f} %  {t}" for t, c in threads.most_common()]
    lines += ["", "own time (leaf frames):"]
    lines += [f"  {c:6d} {100 * c / total:5.1f} %  {f}" for f, c in own.most_common(TOP)]
    lines += ["", "inclusive:"]
    lines += [f"  {c:6d} {100 * c / total:5.1f} %  {f}" for f, c in inclusive.most_common(TOP)]
    return "\n".join(lines)


def profile_live(n: int) -> None:
    from bench.bench_peers import BY_KEY, PeersLab

    with jupyterlab_in_chromium("streamnb-profile-") as (server, browser):
        lab = PeersLab(
            server,
            browser,
            contenders=[BY_KEY["streamnb"]],
            stoppers=[],
            log=lambda line: print(line, file=sys.stderr),
        )
        try:
            lab.fresh()
            [pid] = kernel_pids(server)
            out = server.log_path.parent / "py-spy.txt"  # the home
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(PY_SPY_RATE_HZ),
                    "--format",
                    "raw",
                    "--threads",
                    "--nonblocking",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(PY_SPY_ATTACH_S)
            trials = [
                lab.trial(BY_KEY["streamnb"], n, i, cap_s=LIVE_CAP_S) for i in range(LIVE_RUNS)
            ]
            spy.send_signal(signal.SIGINT)
            _, err = spy.communicate(timeout=60)
            print(f"# py-spy on the kernel (pid {pid}) during {LIVE_RUNS} floods of {n:,}")
            if out.exists():
                print(top_frames(out.read_text()))
            else:
                print(f"py-spy wrote nothing: {err.decode(errors='replace')[-2000:]}")
            print("\n# page timelines, ms after the execute_request left the page")
            for i, timeline in enumerate(lab.cold_start):
                print(f"cold (first widget in the page, {i}): {json.dumps(timeline)}")
            for t in trials:
                print(
                    f"warm {n:,} tokens, round {t.round}: {t.outcome}, "
                    f"{t.messages} iopub msgs, {json.dumps(t.timeline_ms)}"
                )
        finally:
            lab.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["kernel", "live"])
    p.add_argument("--tokens", type=int, default=50_000)
    args = p.parse_args(argv)
    if args.mode == "kernel":
        profile_kernel(args.tokens)
    else:
        profile_live(args.tokens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
