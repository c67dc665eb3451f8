"""Acquisition readers: ND2 (``nd2`` or ``nd2reader``), OME-TIFF, ImageJ and
plain TIFF stacks, and TIFF sequences, all behind one :class:`Acquisition`
interface.  Pure I/O; see ``docs/input_formats.md``.

Examples
--------
>>> for src in find_acquisitions(folder):                       # doctest: +SKIP
...     with open_acquisition(src) as acq:
...         frame = acq.read_frame(position=0, t=0, channel=0, z="max")
"""
from .base import Acquisition, AcquisitionSource, InvalidAcquisitionError
from .discovery import find_acquisitions, open_acquisition, output_stem, source_for_path
from .sequence import DEFAULT_SEQUENCE_PATTERN

__all__ = [
    "Acquisition",
    "AcquisitionSource",
    "InvalidAcquisitionError",
    "DEFAULT_SEQUENCE_PATTERN",
    "find_acquisitions",
    "open_acquisition",
    "output_stem",
    "source_for_path",
]
