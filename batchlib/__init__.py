"""batchlib: incremental, crash-safe batch processing of mother-machine microscopy folders."""
from ._version import __version__
from .base import BatchJob, JobResult, Param
from .container_job import BatchJobOnContainer, KeySpec
from .errors import InvalidInputError, InvalidOutputError, JobError, LockError
from .workflow import WorkflowResult, run_workflow

__all__ = ["BatchJob", "BatchJobOnContainer", "KeySpec", "Param", "JobResult", "run_workflow",
           "WorkflowResult", "InvalidInputError", "InvalidOutputError", "JobError", "LockError",
           "__version__"]
