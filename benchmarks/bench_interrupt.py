"""Benchmark of Ctrl-C: how long a workflow takes to stop, and what it prints.

A trivial job (ImportArray) whose units sleep ``--unit-s`` seconds runs in a
subprocess in its own session; once the units run, SIGINT goes to the whole
process group (as a terminal's Ctrl-C does) and the time until the process
has exited is measured. The floor is the same for a Python process that only
sleeps (it has nothing to clean up), measured in the same run.

Usage::

    python benchmarks/bench_interrupt.py [--quick] [--repeats 5] [--unit-s 5]

Prints a markdown table: median and worst stop time, the ratio to the floor,
the stderr lines printed after the interrupt and whether any was a traceback.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batchlib.testing import make_array_inputs  # noqa: E402

WORKFLOW = """
import sys
from batchlib.testing import ImportArray
from batchlib.workflow import main_exit_code, run_workflow
folder, inp, executor, sleep_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
print("ready", flush=True)
sys.exit(main_exit_code(lambda: run_workflow(
    "WF", folder, [ImportArray(sleep_s=sleep_s)], input_folder=inp, executor=executor, n_jobs=2,
    progress=False, status_interval_s=0)))
"""
FLOOR = "import time, batchlib.workflow; print('ready', flush=True); time.sleep(600)"


def _stop(args, ready):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    proc.stdout.readline()
    ready(proc)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    elapsed = time.monotonic() - t0
    lines = [line for line in err.splitlines() if line.strip()]
    cut = max((i for i, line in enumerate(lines) if "to compute" in line), default=-1)
    return elapsed, lines[cut + 1:], proc.returncode


def _units_running(folder, proc, executor):
    log = Path(folder) / "batchlib" / "WF.log"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and not (log.exists() and "to compute" in log.read_text()):
        time.sleep(0.02)
    if executor == "processes":  # spawned workers take a moment to start
        while time.monotonic() - t0 < 60:
            out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
            if len(out.split()) >= 2:
                break
            time.sleep(0.02)
    time.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--unit-s", type=float, default=5.0, help="seconds each unit sleeps")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    rows = []
    floor = [_stop([FLOOR], lambda p: time.sleep(0.2))[0] for _ in range(repeats)]
    floor_s = statistics.median(floor)
    for executor in ("serial", "processes"):
        times, extra, codes = [], [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                inp, folder = os.path.join(tmp, "in"), os.path.join(tmp, "out")
                make_array_inputs(inp, 6, shape=(2, 8, 8))
                elapsed, after, code = _stop(
                    [WORKFLOW, folder, inp, executor, str(args.unit_s)],
                    lambda p, f=folder, e=executor: _units_running(f, p, e))
                times.append(elapsed)
                extra.append(after)
                codes.append(code)
        rows.append((executor, statistics.median(times), max(times), statistics.median(times) / floor_s,
                     max(len(a) for a in extra), any("Traceback" in line for a in extra for line in a),
                     sorted(set(codes))))
    print(f"Ctrl-C (SIGINT to the process group) while units of {args.unit_s:g} s run; "
          f"{repeats} repeats; floor (a sleeping Python process): {floor_s:.3f} s\n")
    print("| executor | median stop (s) | worst (s) | median / floor | stderr lines after | traceback | exit codes |")
    print("|---|---|---|---|---|---|---|")
    for ex, med, worst, ratio, n_lines, tb, codes in rows:
        print(f"| {ex} | {med:.3f} | {worst:.3f} | {ratio:.1f} | {n_lines} | {'yes' if tb else 'no'} | {codes} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
