"""Performance (issue 13): start-up, "nothing to do", time per frame, cores, memory, Ingest.

Every row is measured as whole processes (``/usr/bin/time`` for the peak
memory) and printed as a ratio against its floor or peer measured in the
same run; ``--compare DIR`` adds the same rows for another checkout of
batchlib (e.g. the main branch), run alternately with this one (paired runs,
medians).

    python benchmarks/bench_perf.py                      # all rows, default sizes
    python benchmarks/bench_perf.py --quick              # small sizes, for a smoke test
    python benchmarks/bench_perf.py --rows import noop   # some rows only
    python benchmarks/bench_perf.py --compare ../main    # paired with another checkout
    python benchmarks/bench_perf.py --peers              # also Snakemake and molyso (installed
                                                         # into benchmarks/.peers/, see below)

Rows (``--rows``): ``import`` (``import batchlib.cli`` and the workflow's
``--help``; floor: a bare interpreter), ``noop`` (a rerun with nothing to do
over N done images of a trivial job; floor: a process that stats every input
and output; peer: Snakemake), ``workflow`` (the whole trench workflow serial
and with ``--n_jobs 2``; floor: reading the same frames), ``position`` (one
position of phase frames; peer: molyso, which also tracks), ``ingest``
(Ingest alone; peer: a 15-line tifffile + h5py Blosc-LZ4 converter),
``rerun`` (the whole trench workflow rerun on a done folder, with the CSV
export, the report and the summary it prints; floor: its ``--help``).

Each checkout is byte-compiled first (``compileall``, as ``pip install``
does), so that no row measures Python compiling an editable checkout's
modules.

Peers are installed only with ``--peers``, each into its own virtual
environment under ``benchmarks/.peers/``: Snakemake with this Python;
molyso 1.0.6 with Python 3.8 from pyenv (numpy 1.21.6, scipy 1.7.3,
tifffile 2021.11.2). A peer that cannot be installed is skipped with a
message.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(__file__).resolve().parent / ".peers"
TIME = shutil.which("time") or "/usr/bin/time"


def measure(cmd, env=None, cwd="/") -> tuple:
    """``(seconds, peak MB)`` of one process (``/usr/bin/time``); run from ``/`` so that
    ``python -c`` imports batchlib from ``PYTHONPATH``, not from the current folder."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        proc = subprocess.run([TIME, "-f", "%e %M", "-o", tf.name, *cmd], env=env, cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        sec, kb = tf.read().split()[-2:]
    return float(sec), int(kb) / 1024


def byte_compile(checkout) -> None:
    """Byte-compile a checkout's modules, as ``pip install`` does for an installed package.

    The runs themselves write no bytecode (``env_for``), so without this an
    editable checkout compiles every module it imports in every process, and
    each row would measure the compiler (measured: 0.45-0.56 against
    0.39-0.43 s for the 10,000-image no-op rerun).
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(checkout) / "batchlib")],
                   check=True, stdout=subprocess.DEVNULL)


def env_for(checkout) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout), PYTHONDONTWRITEBYTECODE="1")
    env.pop("LOGLEVEL", None)
    return env


def paired(variants: dict, repeats: int) -> dict:
    """Run every ``name -> (cmd, env)`` in turn, ``repeats`` rounds; medians per name."""
    runs = {name: [] for name in variants}
    for _ in range(repeats):
        for name, (cmd, env) in variants.items():
            runs[name].append(measure(cmd, env))
    return {name: (statistics.median(s for s, _ in r), max(m for _, m in r)) for name, r in runs.items()}


class Table:
    def __init__(self):
        self.rows = []

    def add(self, what, value, unit, ref_name, ref_value, target=""):
        ratio = value / ref_value if ref_value else float("nan")
        self.rows.append((what, f"{value:.3f} {unit}", f"{ref_name}: {ref_value:.3f} {unit}",
                          f"{ratio:.2f}", target))

    def print(self):
        print("\n| what | measured | floor / peer (same run) | ratio | target |")
        print("|---|---:|---:|---:|---|")
        for row in self.rows:
            print("| " + " | ".join(row) + " |")


# -- rows ------------------------------------------------------------------------
def row_import(table, checkouts, repeats):
    py = sys.executable
    variants = {"floor": ([py, "-c", "pass"], env_for(ROOT))}
    for label, co in checkouts.items():
        variants[f"cli {label}"] = ([py, "-c", "import batchlib.cli"], env_for(co))
        variants[f"help {label}"] = ([py, str(Path(co) / "workflows" / "trench_workflow.py"), "--help"],
                                     env_for(co))
    res = paired(variants, repeats)
    floor = res["floor"][0]
    for label in checkouts:
        table.add(f"`import batchlib.cli` ({label})", res[f"cli {label}"][0], "s", "bare python", floor,
                  "≤ 0.25 s")
        table.add(f"`trench_workflow.py --help` ({label})", res[f"help {label}"][0], "s", "bare python",
                  floor)


NOOP_SCRIPT = textwrap.dedent("""
    import sys
    from batchlib.testing import ImportArray
    from batchlib.workflow import run_workflow
    if __name__ == "__main__":  # spawned workers import this file again
        res = run_workflow("Bench", sys.argv[2], [ImportArray()], input_folder=sys.argv[1],
                           progress=False, log_level="WARNING", executor=sys.argv[3], n_jobs=2)
        assert res.success, res.state
        if sys.argv[4] == "noop":
            assert not res.jobs[0].computed, "a no-op rerun computed something"
""")

STAT_FLOOR = textwrap.dedent("""
    import os, sys
    for d in sys.argv[1:]:
        for e in os.scandir(d):
            e.stat()
""")

SNAKEFILE = textwrap.dedent("""
    import os
    NAMES = [f[:-4] for f in os.listdir(config["inp"]) if f.endswith(".npy")]
    rule all:
        input: expand(config["out"] + "/{n}.h5", n=NAMES)
    rule one:
        input: config["inp"] + "/{n}.npy"
        output: config["out"] + "/{n}.h5"
        shell: "cp {input} {output}"
""")


def row_noop(table, checkouts, sizes, repeats, peers, tmp):
    from batchlib.testing import make_array_inputs

    py = sys.executable
    for n in sizes:
        root = Path(tempfile.mkdtemp(prefix=f"noop{n}_", dir=tmp))
        try:
            inp = root / "in"
            make_array_inputs(str(inp), n, shape=(1, 4, 4), dtype="uint8")
            script = root / "noop.py"
            script.write_text(NOOP_SCRIPT)
            variants = {}
            for label, co in checkouts.items():
                out = root / f"out_{label}"
                measure([py, str(script), str(inp), str(out), "processes" if n > 2000 else "serial",
                         "first"], env_for(co))
                measure([py, str(script), str(inp), str(out), "serial", "noop"], env_for(co))  # index
                variants[label] = ([py, str(script), str(inp), str(out), "serial", "noop"], env_for(co))
            first = next(iter(checkouts))
            floor_script = root / "floor.py"
            floor_script.write_text(STAT_FLOOR)
            variants["floor"] = ([py, str(floor_script), str(inp), str(root / f"out_{first}")], env_for(ROOT))
            snake = _snakemake(peers)
            if snake:
                sdir = root / "snake"
                sdir.mkdir()
                (sdir / "Snakefile").write_text(SNAKEFILE)
                cmd = [snake, "--cores", "1", "--quiet", "--config", f"inp={inp}", f"out={sdir / 'out'}",
                       "--directory", str(sdir), "-s", str(sdir / "Snakefile")]
                # Its outputs, made outside it (running 10,000 jobs through it takes far longer
                # than the benchmark; measured: a few seconds per job), then marked up to date.
                (sdir / "out").mkdir()
                for f in inp.iterdir():
                    shutil.copy(f, sdir / "out" / (f.stem + ".h5"))
                measure(cmd + ["--touch"])
                variants["snakemake"] = (cmd, None)
            res = paired(variants, repeats)
            status_mb = {label: sum(p.stat().st_size for p in (root / f"out_{label}" / "batchlib").glob(
                "ImportArray.*")) / 1e6 for label in checkouts}
            for label in checkouts:
                sec, mb = res[label]
                ref = ("snakemake", res["snakemake"][0]) if "snakemake" in res else ("stat floor", res["floor"][0])
                table.add(f"no-op rerun, {n:,} done images ({label}; peak {mb:.0f} MB, status+index "
                          f"{status_mb[label]:.1f} MB)", sec, "s", *ref,
                          "≤ 0.3 s" if n <= 10_000 else "≤ 2 s, ≤ 200 MB")
                if "snakemake" in res:
                    table.add(f"no-op rerun, {n:,} ({label}) against the stat floor", sec, "s", "stat floor",
                              res["floor"][0])
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _workflow_cmd(co, raw, out, n_jobs, extra=()):
    return [sys.executable, str(Path(co) / "workflows" / "trench_workflow.py"), "--input_folder", str(raw),
            "--folder", str(out), "--n_jobs", str(n_jobs), "--executor",
            "processes" if n_jobs > 1 else "serial", "--progress", "false", "--log_level", "WARNING",
            "--detect_qc_plot", "false", *extra]


READ_FLOOR = textwrap.dedent("""
    import sys, tifffile
    for path in sys.argv[1:]:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                page.asarray()
""")


def _job_seconds(out) -> dict:
    got = {}
    for p in sorted((Path(out) / "batchlib").glob("*.status")):
        d = json.loads(p.read_text())
        if d.get("schema", "").startswith("batchlib-job") and d.get("duration_s") is not None:
            got[d["job"]] = d["duration_s"]
    return got


@contextlib.contextmanager
def _acquisition(prefix, tmp, positions, timepoints, size, seed):
    """``(root, raw, tiffs)``: a generated phase + gfp OME-TIFF acquisition in a scratch
    folder under ``tmp``, removed afterwards."""
    from batchlib.trench.synthetic import SyntheticConfig, write_acquisition

    root = Path(tempfile.mkdtemp(prefix=prefix, dir=tmp))
    try:
        raw = root / "raw"
        cfg = SyntheticConfig(height=size, width=size, n_positions=positions, n_timepoints=timepoints,
                              channels=("phase", "gfp"), seed=seed)
        write_acquisition(raw, cfg, layout="ome-tiff", name="bench", ground_truth=False)
        yield root, raw, sorted(str(p) for p in raw.rglob("*.tif*"))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def row_workflow(table, checkouts, positions, timepoints, size, repeats, tmp):
    with _acquisition("wf_", tmp, positions, timepoints, size, seed=1) as (root, raw, tiffs):
        floor_script = root / "floor.py"
        floor_script.write_text(READ_FLOOR)
        frames = positions * timepoints
        runs = {(label, nj): [] for label in checkouts for nj in (1, 2)}
        floor = []
        jobs = {}
        for r in range(repeats):
            floor.append(measure([sys.executable, str(floor_script), *tiffs], env_for(ROOT)))
            for label, co in checkouts.items():
                for nj in (1, 2):
                    out = root / f"out_{label}_{nj}_{r}"
                    runs[(label, nj)].append(measure(_workflow_cmd(co, raw, out, nj), env_for(co)))
                    if nj == 1:
                        jobs.setdefault(label, []).append(_job_seconds(out))
                    shutil.rmtree(out, ignore_errors=True)
        f_sec = statistics.median(s for s, _ in floor)
        for label in checkouts:
            serial = statistics.median(s for s, _ in runs[(label, 1)])
            par = statistics.median(s for s, _ in runs[(label, 2)])
            peak = max(m for _, m in runs[(label, 1)])
            per_job = {k: statistics.median(j.get(k, 0) for j in jobs[label]) for k in jobs[label][0]}
            detail = ", ".join(f"{k} {v:.1f}" for k, v in per_job.items())
            table.add(f"workflow, {positions} pos × {timepoints} frames × 2 ch × {size}², serial, per FOV "
                      f"frame ({label}; {detail} s)", serial / frames * 1e3, "ms", "reading the frames",
                      f_sec / frames * 1e3, "≤ 25 ms per frame")
            table.add(f"the same, `--n_jobs 2` against serial ({label})", par, "s", "serial", serial,
                      "≤ 1/1.8")
            table.add(f"peak RSS of the serial workflow ({label})", peak, "MB", "reading the frames",
                      max(m for _, m in floor), "≤ 300 MB")


def row_rerun(table, checkouts, repeats, tmp):
    """The whole trench workflow rerun on a done folder, CSV export and report included."""
    with _acquisition("rerun_", tmp, 2, 8, 512, seed=3) as (root, raw, _):
        variants = {}
        for label, co in checkouts.items():
            cmd = _workflow_cmd(co, raw, root / f"out_{label}", 1, ("--export_csv", "true"))
            measure(cmd, env_for(co))  # processes everything once
            variants[label] = (cmd, env_for(co))
            variants[f"help {label}"] = (
                [sys.executable, str(Path(co) / "workflows" / "trench_workflow.py"), "--help"], env_for(co))
        res = paired(variants, repeats)
        for label in checkouts:
            sec, mb = res[label]
            table.add(f"trench workflow rerun with nothing to do, CSV export + report + summary, "
                      f"2 pos × 8 frames ({label}; peak {mb:.0f} MB)", sec, "s", "its `--help`",
                      res[f"help {label}"][0])


def row_ingest(table, checkouts, positions, timepoints, size, repeats, tmp):
    with _acquisition("ingest_", tmp, positions, timepoints, size, seed=2) as (root, raw, tiffs):
        conv = root / "convert.py"
        conv.write_text(CONVERTER)
        script = root / "ingest.py"
        script.write_text(INGEST_SCRIPT)
        variants = {"converter": ([sys.executable, str(conv), str(root / "conv"), *tiffs], env_for(ROOT))}
        for label, co in checkouts.items():
            variants[label] = ([sys.executable, str(script), str(raw), str(root / f"out_{label}")],
                               env_for(co))
        res = paired_fresh(variants, repeats, root)
        for label in checkouts:
            table.add(f"Ingest, {positions} pos × {timepoints} × 2 ch × {size}² ({label})", res[label][0],
                      "s", "15-line converter", res["converter"][0], "≤ 1.1×")


def paired_fresh(variants, repeats, root):
    """:func:`paired`, with every output folder removed before each run."""
    runs = {name: [] for name in variants}
    for _ in range(repeats):
        for name, (cmd, env, *cwd) in variants.items():
            for p in root.glob("out_*"):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
            shutil.rmtree(root / "conv", ignore_errors=True)
            runs[name].append(measure(cmd, env, *cwd))
    return {name: (statistics.median(s for s, _ in r), max(m for _, m in r)) for name, r in runs.items()}


CONVERTER = textwrap.dedent("""
    import os, sys
    import h5py, hdf5plugin, tifffile
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for path in sys.argv[2:]:
        with tifffile.TiffFile(path) as tif:
            for p, series in enumerate(tif.series):
                data = series.asarray()  # (T, C, Y, X)
                with h5py.File(os.path.join(out, f"{os.path.basename(path)}_{p}.h5"), "w") as f:
                    for c in range(data.shape[1]):
                        f.create_dataset(f"raw/c{c}", data=data[:, c], chunks=(1,) + data.shape[2:],
                                         **hdf5plugin.Blosc(cname="lz4", clevel=5))
""")

INGEST_SCRIPT = textwrap.dedent("""
    import sys
    from batchlib.trench.jobs import Ingest
    if __name__ == "__main__":
        res = Ingest()(sys.argv[2], input_folder=sys.argv[1], progress=False, log_level="WARNING")
        assert res.success, res.state
""")


def row_position(table, checkouts, timepoints, size, repeats, peers, tmp):
    from batchlib.trench.synthetic import SyntheticConfig, write_acquisition

    root = Path(tempfile.mkdtemp(prefix="pos_", dir=tmp))
    try:
        raw = root / "raw"
        cfg = SyntheticConfig(height=size, width=size, n_positions=1, n_timepoints=timepoints,
                              channels=("phase",), seed=3)
        write_acquisition(raw, cfg, layout="ome-tiff", name="one", ground_truth=False)
        variants = {}
        for label, co in checkouts.items():
            variants[label] = (_workflow_cmd(co, raw, root / f"out_{label}", 1), env_for(co))
        molyso = _molyso(peers)
        if molyso:  # on one core as ours, without its cache, tracking included
            import tifffile

            # molyso 1.0.6 reads OME-TIFFs only with the BigEndian attribute that tifffile no
            # longer writes: the same frames as an ImageJ stack
            tiff = root / "molyso_input.tif"
            movie = tifffile.imread(next(raw.rglob("*.tif*")))
            tifffile.imwrite(tiff, movie.reshape(-1, *movie.shape[-2:]), imagej=True,
                             metadata={"axes": "TYX"})
            variants["molyso"] = ([molyso, "-m", "molyso", str(tiff), "-p", "-o", str(root / "out_molyso.tsv"),
                                   "-q", "-nb", "-cpu", "1", "-nc"], None, str(root))
        res = paired_fresh(variants, repeats, root)
        ref = "molyso (with tracking)" if "molyso" in res else "none (run with --peers)"
        for label in checkouts:
            table.add(f"one position × {timepoints} frames × {size}² phase, with tracking ({label})",
                      res[label][0], "s", ref, res.get("molyso", (0, 0))[0], "≥ 5× faster than molyso")
            table.add(f"its peak RSS ({label})", res[label][1], "MB", ref, res.get("molyso", (0, 0))[1])
        # the same workflow again with nothing to do (each checkout on its own finished
        # folder), against a bare interpreter
        for label, co in checkouts.items():
            out = root / f"out_{label}"
            measure(_workflow_cmd(co, raw, out, 1), env_for(co))  # the folder the rerun finds
        rerun = paired({label: (_workflow_cmd(co, raw, root / f"out_{label}", 1), env_for(co))
                        for label, co in checkouts.items()}, repeats)
        bare = paired({"python": ([sys.executable, "-c", "pass"], None)}, repeats)["python"]
        for label in checkouts:
            table.add(f"the trench workflow's rerun with nothing to do ({label}; peak "
                      f"{rerun[label][1]:.0f} MB)", rerun[label][0], "s", "bare interpreter",
                      bare[0], "")
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- peers -------------------------------------------------------------------------
def _snakemake(wanted):
    if not wanted:
        return None
    venv = PEERS / "snakemake"
    exe = venv / "bin" / "snakemake"
    if not exe.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "snakemake>=9,<10"], check=True)
        except (subprocess.CalledProcessError, OSError) as e:
            print(f"Snakemake skipped: it could not be installed ({e})", file=sys.stderr)
            return None
    return str(exe)


def _molyso(wanted):
    if not wanted:
        return None
    venv = PEERS / "molyso"
    py = venv / "bin" / "python"
    if not py.exists():
        pyenv = shutil.which("pyenv") or str(Path.home() / ".pyenv" / "bin" / "pyenv")
        try:
            if not Path(pyenv).exists():
                raise OSError("pyenv is not installed (molyso needs Python 3.8)")
            root = subprocess.run([pyenv, "root"], check=True, capture_output=True, text=True).stdout.strip()
            versions = sorted(Path(root, "versions").glob("3.8.*"))
            if not versions:
                subprocess.run([pyenv, "install", "3.8"], check=True)
                versions = sorted(Path(root, "versions").glob("3.8.*"))
            subprocess.run([str(versions[-1] / "bin" / "python"), "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "numpy==1.21.6", "scipy==1.7.3",
                            "tifffile==2021.11.2", "molyso==1.0.6"], check=True)
        except (subprocess.CalledProcessError, OSError, IndexError) as e:
            print(f"molyso skipped: it could not be installed ({e})", file=sys.stderr)
            shutil.rmtree(venv, ignore_errors=True)
            return None
    return str(py)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rows = ["import", "noop", "rerun", "workflow", "position", "ingest"]
    ap.add_argument("--rows", nargs="+", default=rows, choices=rows)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test, not the targets)")
    ap.add_argument("--compare", default=None, help="another batchlib checkout, run paired with this one")
    ap.add_argument("--peers", action="store_true", help="install and run Snakemake and molyso")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--noop-sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--positions", type=int, default=4)
    ap.add_argument("--timepoints", type=int, default=60)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--tmp", default=None, help="where to build the folders")
    args = ap.parse_args(argv)
    if args.quick:
        args.noop_sizes, args.positions, args.timepoints, args.size = [1000], 2, 8, 512
    checkouts = {"this": ROOT}
    if args.compare:
        checkouts["compared"] = Path(args.compare).resolve()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; medians of {args.repeats} paired "
          f"runs; checkouts: " + ", ".join(f"{k} = {v}" for k, v in checkouts.items()), file=sys.stderr)
    for co in checkouts.values():
        byte_compile(co)
    table = Table()
    if "import" in args.rows:
        row_import(table, checkouts, max(args.repeats, 5))
    if "noop" in args.rows:
        row_noop(table, checkouts, args.noop_sizes, args.repeats, args.peers, args.tmp)
    if "rerun" in args.rows:
        row_rerun(table, checkouts, args.repeats, args.tmp)
    if "workflow" in args.rows:
        row_workflow(table, checkouts, args.positions, args.timepoints, args.size, args.repeats, args.tmp)
    if "position" in args.rows:
        row_position(table, checkouts, args.timepoints, args.size, args.repeats, args.peers, args.tmp)
    if "ingest" in args.rows:
        row_ingest(table, checkouts, args.positions, args.timepoints, args.size, args.repeats, args.tmp)
    table.print()


if __name__ == "__main__":
    main()
