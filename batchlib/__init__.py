"""batchlib: incremental, crash-safe batch processing of mother-machine microscopy folders."""
from ._version import __version__
from .base import BatchJob, Param
from .container_job import BatchJobOnContainer, KeySpec
from .errors import InvalidInputError, InvalidOutputError, JobError, LockError
from .runner import JobResult, RunOptions
from .workflow import WorkflowResult, run_job, run_workflow

__all__ = ["BatchJob", "BatchJobOnContainer", "KeySpec", "Param", "JobResult", "RunOptions", "run_job", "run_workflow",
           "WorkflowResult", "InvalidInputError", "InvalidOutputError", "JobError", "LockError",
           "__version__"]
