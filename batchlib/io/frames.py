"""Streaming movies frame by frame into a container, reading and compressing in parallel.

Writing a frame through h5py runs the HDF5 filter pipeline while holding the
GIL, so reading the next frame cannot overlap with it. For h5 datasets whose
chunk is one frame and whose codec is Blosc, :class:`FrameStream` instead
compresses each frame with python-blosc (which releases the GIL) in a thread
and stores the bytes with ``write_direct_chunk``; the file is identical to
what the filter pipeline writes. Memory stays bounded: a few frames in flight.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .files import is_h5

#: Compressor codes of the HDF5 Blosc filter (cd_values[6]) -> python-blosc names.
_BLOSC_FILTER = 32001
_BLOSC_CODES = {0: "blosclz", 1: "lz4", 2: "lz4hc", 3: "snappy", 4: "zlib", 5: "zstd"}


def _direct_compressor(ds):
    """A ``frame -> bytes`` function for direct chunk writes, or None when not applicable.

    Applicable to h5 datasets whose chunk is one frame and whose only filter is
    Blosc; the settings come from the dataset's own filter pipeline, so the
    bytes are exactly what that filter would have stored.
    """
    if not is_h5(ds) or ds.chunks != (1,) + tuple(ds.shape[1:]):
        return None
    plist = ds.id.get_create_plist()
    if plist.get_nfilters() != 1:
        return None
    code, _, values, _ = plist.get_filter(0)
    if code != _BLOSC_FILTER or len(values) < 7 or values[6] not in _BLOSC_CODES:
        return None
    try:
        import blosc
    except ImportError:
        return None
    clevel, shuffle, cname = int(values[4]), int(values[5]), _BLOSC_CODES[values[6]]
    typesize = ds.dtype.itemsize

    def compress(frame):
        data = np.ascontiguousarray(frame, dtype=ds.dtype)
        return blosc.compress(data.tobytes(), typesize=typesize, clevel=clevel, shuffle=shuffle,
                              cname=cname)

    return compress


def stream_frames(datasets, read_frame, order, window=4):
    """Write frames ``read_frame(t, c)`` into ``datasets[c][t]`` for ``(t, c)`` in ``order``.

    Parameters
    ----------
    datasets : list of datasets (T, Y, X)
        One per channel.
    read_frame : callable
        ``read_frame(t, c) -> ndarray (Y, X)``; called from one reading thread,
        in ``order`` (readers need not be thread-safe).
    order : sequence of (t, c)
    window : int
        Frames read ahead at most.
    """
    order = list(order)
    if not order:
        return
    compressors = [_direct_compressor(ds) for ds in datasets]
    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as packer:
        reads = deque(reader.submit(read_frame, t, c) for t, c in order[:window])
        packed = deque()
        ahead = len(reads)
        for t, c in order:
            frame = reads.popleft().result()
            if ahead < len(order):
                reads.append(reader.submit(read_frame, *order[ahead]))
                ahead += 1
            compress = compressors[c]
            if compress is None:
                datasets[c][t] = frame  # the filter pipeline, in this thread
                continue
            packed.append((t, c, packer.submit(compress, frame)))
            if len(packed) > 2:
                _store(datasets, packed.popleft())
        while packed:
            _store(datasets, packed.popleft())


def _store(datasets, item):
    t, c, future = item
    datasets[c].id.write_direct_chunk((t,) + (0,) * (len(datasets[c].shape) - 1), future.result())
