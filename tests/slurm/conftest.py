"""A single-node Slurm cluster for the tests of this folder, or a skip saying why.

The cluster is started once per session by ``start_cluster.sh`` (in a
temporary directory, on free ports) and stopped by ``stop_cluster.sh`` at the
end, so pytest never leaves a daemon behind. A cluster a developer started by
hand is used as it is when ``$SLURM_CONF`` points at one that answers.
"""
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMMANDS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "sacct", "scancel", "sinfo")


def _answers(env=None) -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10, env=env).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def slurm():
    """``{"conf": path, "dir": path}`` of a running cluster; ``$SLURM_CONF`` is set meanwhile."""
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        pytest.skip(f"Slurm is not installed (apt-get install -y slurm-wlm munge): no {', '.join(missing)}")
    pytest.importorskip("dask_jobqueue")
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PYTHONPATH")}
    # The worker jobs must import this checkout's batchlib (sbatch passes the environment on).
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), saved["PYTHONPATH"]) if p)
    if saved["SLURM_CONF"] and _answers():
        yield {"conf": saved["SLURM_CONF"], "dir": str(Path(saved["SLURM_CONF"]).parent)}
        _restore(saved)
        return
    if os.geteuid() != 0:
        _restore(saved)
        pytest.skip("starting a Slurm cluster needs root (slurmd starts the jobs); "
                    "or start one by hand and set SLURM_CONF")
    folder = tempfile.mkdtemp(prefix="batchlib-slurm-")
    env = {**os.environ, "SLURMCTLD_PORT": str(_free_port()), "SLURMD_PORT": str(_free_port())}
    try:
        started = subprocess.run(["bash", str(HERE / "start_cluster.sh"), folder], env=env,
                                 capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        started = subprocess.CompletedProcess([], 1, "", "start_cluster.sh took over 120 s")
    if started.returncode != 0:
        _stop(folder)
        _restore(saved)
        pytest.skip("could not start a Slurm cluster: " + (started.stderr.strip().splitlines() or ["?"])[-1])
    os.environ["SLURM_CONF"] = os.path.join(folder, "slurm.conf")
    try:
        yield {"conf": os.environ["SLURM_CONF"], "dir": folder}
    finally:
        _stop(folder)
        _restore(saved)


def _stop(folder) -> None:
    subprocess.run(["bash", str(HERE / "stop_cluster.sh"), folder], capture_output=True, timeout=120)
    shutil.rmtree(folder, ignore_errors=True)


def _restore(saved) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
