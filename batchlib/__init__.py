"""batchlib: incremental, crash-safe batch processing of mother-machine microscopy folders."""
__version__ = "0.1.0"

from .base import BatchJob, JobResult, Param  # noqa: E402
from .container_job import BatchJobOnContainer, KeySpec  # noqa: E402
from .errors import InvalidInputError, InvalidOutputError, JobError, LockError  # noqa: E402
from .workflow import WorkflowResult, run_workflow  # noqa: E402

__all__ = ["BatchJob", "BatchJobOnContainer", "KeySpec", "Param", "JobResult", "run_workflow",
           "WorkflowResult", "InvalidInputError", "InvalidOutputError", "JobError", "LockError",
           "__version__"]
