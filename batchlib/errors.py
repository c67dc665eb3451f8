"""Exceptions raised by batchlib jobs and workflows."""


class BatchlibError(Exception):
    """Base class of batchlib's errors."""


class InvalidInputError(BatchlibError):
    """An input cannot be processed; the message says which file and why."""


class InvalidOutputError(BatchlibError):
    """An output exists but does not hold what the job promises."""


class JobError(BatchlibError):
    """A job stopped because of invalid inputs or failed outputs.

    Attributes
    ----------
    job : str
        The job's name.
    problems : dict
        ``{input: reason}`` for every file that stopped it.
    """

    def __init__(self, job, problems, kind):
        self.job, self.problems, self.kind = job, dict(problems), kind
        lines = [f"{job}: {len(self.problems)} {kind}:"]
        shown = list(self.problems.items())[:20]
        lines += [f"  {name}: {reason}" for name, reason in shown]
        if len(self.problems) > len(shown):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more (see the .status file)")
        flag = "--ignore_invalid_inputs" if kind == "invalid inputs" else "--ignore_failed_outputs"
        lines.append(f"Fix them, or rerun with {flag} to process the other files.")
        super().__init__("\n".join(lines))


class OutputCollisionError(JobError):
    """Two inputs would be written to the same output; found while planning, before any write.

    Attributes
    ----------
    collisions : dict
        ``{output: [input keys]}`` for every output claimed more than once.
    """

    def __init__(self, job, collisions):
        self.job, self.kind, self.collisions = job, "output name collisions", dict(collisions)
        self.problems = {k: f"writes {out}, as {len(keys) - 1} other input(s) would"
                         for out, keys in self.collisions.items() for k in keys}
        lines = [f"{job}: {len(self.collisions)} output(s) would be written by more than one input "
                 f"(nothing was written):"]
        lines += [f"  {out} <- {' and '.join(keys)}" for out, keys in list(self.collisions.items())[:20]]
        lines.append("Rename or move one of each pair of inputs (or process them in separate folders).")
        BatchlibError.__init__(self, "\n".join(lines))


class LockError(BatchlibError):
    """Another run holds the folder's lock."""
