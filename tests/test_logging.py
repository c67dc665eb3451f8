"""Logging: ``Workflow.<JobName>`` loggers, one line once in the log file, no handler leaks."""
import logging
import os
import re

import pytest

from batchlib.errors import JobError
from batchlib.log import get_logger, resolve_level, workflow_logging
from batchlib.testing import ImportArray, ScaleRaw, make_array_inputs
from batchlib.workflow import run_workflow

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[(\w+)\] ([\w.]+): (.*)$")


def run(folder, inp, jobs=None, **kwargs):
    jobs = jobs if jobs is not None else [ImportArray(), ScaleRaw()]
    return run_workflow("WF", folder, jobs, input_folder=inp, progress=False, **kwargs)


def log_lines(folder):
    with open(os.path.join(folder, "batchlib", "WF.log"), encoding="utf-8") as f:
        return f.read().splitlines()


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.delenv("LOGLEVEL", raising=False)
    inp, folder = str(tmp_path / "in"), str(tmp_path / "out")
    make_array_inputs(inp, 3)
    return inp, folder


def handlers():
    return list(get_logger().handlers)


def test_logger_names():
    assert get_logger().name == "Workflow"
    assert get_logger("ImportArray").name == "Workflow.ImportArray"
    assert ImportArray().logger.name == "Workflow.ImportArray"
    assert ImportArray(identifier="b").logger.name == "Workflow.ImportArray_b"


def test_each_line_once_and_no_handler_leak(dirs, capfd):
    inp, folder = dirs
    before = handlers()
    state = (get_logger().level, get_logger().propagate)
    run(folder, inp, log_level="DEBUG")
    assert handlers() == before
    assert (get_logger().level, get_logger().propagate) == state  # level and propagation restored
    os.remove(os.path.join(folder, "batchlib", "WF.log"))
    capfd.readouterr()
    run(folder, inp, force_recompute=True)
    lines = log_lines(folder)
    assert lines and all(LINE.match(line) for line in lines), lines
    assert len(lines) == len(set(lines))  # every line exactly once
    loggers = {LINE.match(line).group(2) for line in lines}
    assert {"Workflow", "Workflow.ImportArray", "Workflow.ScaleRaw"} <= loggers
    job_line = [line for line in lines if "Workflow.ImportArray: 3 input(s)" in line]
    assert len(job_line) == 1
    err = capfd.readouterr().err
    assert err.count("Workflow.ImportArray: 3 input(s)") == 1  # once on the terminal too

    run(folder, inp)  # a second run appends: each line once per run
    assert handlers() == before
    lines = log_lines(folder)
    assert sum("Workflow.ImportArray: 3 input(s): 0 up to date, 3 to compute" in line for line in lines) == 1
    assert not any("[DEBUG]" in line for line in lines)  # the DEBUG level of the first run is gone
    assert sum("Workflow.ImportArray: 3 input(s): 3 up to date, 0 to compute" in line for line in lines) == 1
    assert sum("workflow WF finished: processed" in line for line in lines) == 2
    err = capfd.readouterr().err
    assert err.count("workflow WF finished") == 1


def test_handlers_removed_after_an_error(dirs):
    inp, folder = dirs
    before = handlers()
    open(os.path.join(inp, "empty.npy"), "wb").close()
    with pytest.raises(JobError):
        run(folder, inp)
    assert handlers() == before
    lines = log_lines(folder)
    assert sum("invalid input" in line and "empty.npy" in line for line in lines) == 1
    assert sum("workflow WF stopped" in line for line in lines) == 1


def test_loglevel_environment_variable(dirs, monkeypatch):
    inp, folder = dirs
    monkeypatch.setenv("LOGLEVEL", "WARNING")
    run(folder, inp, [ImportArray(fail_on="im000001")], ignore_failed_outputs=True)
    levels = [LINE.match(line).group(1) for line in log_lines(folder)]
    assert "INFO" not in levels and "ERROR" in levels

    monkeypatch.setenv("LOGLEVEL", "debug")
    os.remove(os.path.join(folder, "batchlib", "WF.log"))
    run(folder, inp, [ImportArray(fail_on="im000001")], ignore_failed_outputs=True)
    lines = log_lines(folder)
    levels = [LINE.match(line).group(1) for line in lines if LINE.match(line)]
    assert "INFO" in levels and "DEBUG" in levels  # the traceback of the failure
    assert any("Traceback" in line for line in lines)

    # An explicit level wins over the environment.
    os.remove(os.path.join(folder, "batchlib", "WF.log"))
    run(folder, inp, [ImportArray()], log_level="ERROR")
    assert not [line for line in log_lines(folder) if "[INFO]" in line]


def test_resolve_level(monkeypatch):
    monkeypatch.delenv("LOGLEVEL", raising=False)
    assert resolve_level() == logging.INFO
    assert resolve_level("warning") == logging.WARNING and resolve_level(10) == 10
    monkeypatch.setenv("LOGLEVEL", "ERROR")
    assert resolve_level() == logging.ERROR
    with pytest.raises(ValueError):
        resolve_level("LOUD")


def test_workflow_logging_context(tmp_path):
    before = handlers()
    path = tmp_path / "sub" / "x.log"
    with workflow_logging(path, "INFO") as logger:
        get_logger("Job").info("hello %s", "there")
        assert len(handlers()) == len(before) + 2
        assert logger.propagate is False
    get_logger("Job").info("after the run")  # no handler any more: not in the file
    text = path.read_text()
    assert text.count("Workflow.Job: hello there") == 1 and "after the run" not in text
    assert handlers() == before
