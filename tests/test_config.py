"""Workflow options from a config file and the command line (configargparse)."""
import inspect

import pytest

from batchlib.base import BatchJob, Param
from batchlib.config import job_params, str2bool, workflow_options, workflow_parser
from batchlib.testing import ImportArray, ScaleRaw, make_array_inputs
from batchlib.workflow import run_workflow


class Options(BatchJob):
    """A job with parameters of every kind."""

    params = {
        "count": Param(3, "an int"),
        "ratio": Param(0.5, "a float"),
        "mode": Param("fast", "a choice", choices=("fast", "exact")),
        "channels": Param(["phase"], "a list of str"),
        "sizes": Param([1, 2], "a list of int"),
        "flag": Param(False, "a bool"),
        "on": Param(True, "a bool that is on"),
        "maybe": Param(None, "no default"),
    }


JOBS = [("imp", ImportArray), ("scale", ScaleRaw), ("opt", Options)]


@pytest.fixture
def parser():
    return workflow_parser("test workflow", JOBS)


def write_config(tmp_path, text):
    path = tmp_path / "wf.conf"
    path.write_text(text)
    return str(path)


CONFIG = """
# a comment
input_folder = data/raw
folder = data/out
force_recompute = true
ignore_invalid_inputs = yes
executor = processes
n_jobs = 3
rerun_triggers = [mtime, params]
lock_timeout = 2.5
scale_factor = 1.5
imp_hash_inputs = true
opt_count = 7
opt_mode = exact
opt_channels = [phase, gfp]
opt_sizes = [4, 5, 6]
opt_on = false
"""


def test_config_file(parser, tmp_path):
    args = parser.parse_args(["-c", write_config(tmp_path, CONFIG)])
    assert args.input_folder == "data/raw" and args.folder == "data/out"
    assert args.force_recompute is True and args.ignore_invalid_inputs is True
    assert args.ignore_failed_outputs is False and args.lock is True and args.break_lock is False
    assert args.executor == "processes" and args.n_jobs == 3 and args.lock_timeout == 2.5
    assert args.rerun_triggers == ["mtime", "params"]
    assert args.scale_factor == 1.5 and isinstance(args.scale_factor, float)
    assert args.imp_hash_inputs is True and args.imp_fail_on == "" and args.imp_sleep_s == 0.0
    assert job_params(args, "opt", Options) == {
        "count": 7, "ratio": 0.5, "mode": "exact", "channels": ["phase", "gfp"], "sizes": [4, 5, 6],
        "flag": False, "on": False, "maybe": None}
    assert job_params(args, "scale", ScaleRaw) == {"factor": 1.5, "fail_on": ""}


def test_command_line_overrides_config(parser, tmp_path):
    path = write_config(tmp_path, CONFIG)
    args = parser.parse_args(["-c", path, "--force_recompute", "false", "--n_jobs", "4",
                              "--scale_factor", "3", "--opt_channels", "bf", "--imp_hash_inputs", "no",
                              "--folder", "elsewhere", "--rerun_triggers", "input"])
    assert args.force_recompute is False and args.n_jobs == 4 and args.scale_factor == 3.0
    assert args.opt_channels == ["bf"] and args.imp_hash_inputs is False and args.folder == "elsewhere"
    assert args.rerun_triggers == ["input"]
    assert args.ignore_invalid_inputs is True  # still from the file
    args = parser.parse_args(["-c", path, "--force_recompute", "--opt_flag"])  # bare flags mean true
    assert args.force_recompute is True and args.opt_flag is True


def test_booleans_are_booleans(parser):
    base = ["--input_folder", "i", "--folder", "f"]
    args = parser.parse_args(base)
    assert args.force_recompute is False and args.opt_on is True and args.progress is None
    for text, value in (("true", True), ("False", False), ("1", True), ("0", False), ("yes", True),
                        ("off", False)):
        args = parser.parse_args(base + ["--force_recompute", text, "--progress", text])
        assert args.force_recompute is value and args.progress is value
    assert parser.parse_args(base + ["--force_recompute"]).force_recompute is True
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--force_recompute", "maybe"])
    assert str2bool(True) is True


def test_typed_and_checked_job_options(parser):
    base = ["--input_folder", "i", "--folder", "f"]
    args = parser.parse_args(base + ["--opt_count", "11", "--opt_sizes", "7", "8", "--opt_maybe", "x"])
    assert args.opt_count == 11 and args.opt_sizes == [7, 8] and args.opt_maybe == "x"
    for bad in (["--opt_count", "1.5"], ["--opt_mode", "slow"], ["--executor", "threads"],
                ["--rerun_triggers", "sometimes"], ["--no_such_option", "1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(base + bad)
    with pytest.raises(SystemExit):  # the folders are required
        parser.parse_args([])
    help_text = parser.format_help()
    for option in ("--imp_fail_on", "--imp_sleep_s", "--imp_hash_inputs", "--scale_factor", "--opt_mode",
                   "--force_recompute", "--break_lock", "--slurm_queue"):
        assert option in help_text


def test_workflow_options_run(parser, tmp_path):
    inp, folder = tmp_path / "in", tmp_path / "out"
    make_array_inputs(inp, 2)
    conf = write_config(tmp_path, f"input_folder = {inp}\nfolder = {folder}\nscale_factor = 4\n"
                                  "rerun_triggers = [input, params]\nprogress = false\n")
    args = parser.parse_args(["-c", conf, "--lock_timeout", "1"])
    opts = workflow_options(args)
    accepted = set(inspect.signature(run_workflow).parameters)
    assert set(opts) <= accepted
    assert opts["input_folder"] == str(inp) and opts["force_recompute"] is False
    assert opts["rerun_triggers"] == ["input", "params"] and opts["lock_timeout"] == 1.0
    assert opts["executor"] == "serial" and opts["n_jobs"] == 1 and opts["progress"] is False
    assert opts["slurm"] == {"queue": None, "account": None, "cores": 4, "memory": "16GB",
                             "walltime": "02:00:00", "jobs": 1, "job_extra_directives": [],
                             "log_directory": str(folder / "batchlib" / "slurm"), "interface": None}
    jobs = [ImportArray(**job_params(args, "imp", ImportArray)), ScaleRaw(**job_params(args, "scale", ScaleRaw))]
    res = run_workflow("WF", args.folder, jobs, **opts)
    assert res.success and jobs[1].param_values["factor"] == 4.0
