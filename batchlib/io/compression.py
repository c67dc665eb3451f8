"""Compression settings for h5 and n5/zarr datasets.

The default was chosen by measurement (``benchmarks/bench_compression.py``,
figures in ``docs/compression.md``): Blosc with LZ4 and bit-shuffle compresses
microscopy frames about as well as gzip at a small fraction of the time.
"""
from __future__ import annotations

DEFAULT_COMPRESSION = "blosc-lz4"

#: Names accepted wherever a ``compression`` option is taken.
COMPRESSIONS = ("blosc-lz4", "blosc-zstd", "gzip", "lz4", "none")


def h5_compression_kwargs(name: str | None) -> dict:
    """Keyword arguments for ``h5py.Group.create_dataset`` for a compression name."""
    name = DEFAULT_COMPRESSION if name in (None, "default") else name
    if name == "none":
        return {}
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    import hdf5plugin  # registers the filters with HDF5

    if name == "blosc-lz4":
        return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE))
    if name == "blosc-zstd":
        return dict(hdf5plugin.Blosc(cname="zstd", clevel=3, shuffle=hdf5plugin.Blosc.BITSHUFFLE))
    if name == "lz4":
        return dict(hdf5plugin.LZ4())
    raise ValueError(f"unknown compression {name!r}; choose one of {COMPRESSIONS}")


def z5_compression_kwargs(name: str | None, zarr: bool = False) -> dict:
    """Keyword arguments for ``z5py.Group.create_dataset`` for a compression name.

    z5py has no plain LZ4 codec for zarr; there ``lz4`` is Blosc-LZ4 without shuffle.
    """
    name = DEFAULT_COMPRESSION if name in (None, "default") else name
    if name == "lz4" and zarr:
        return {"compression": "blosc", "codec": "lz4", "clevel": 5, "shuffle": 0}
    if name == "none":
        return {"compression": "raw"}
    if name == "gzip":
        return {"compression": "gzip", "level": 4}
    if name == "blosc-lz4":
        return {"compression": "blosc", "codec": "lz4", "clevel": 5, "shuffle": 2}
    if name == "blosc-zstd":
        return {"compression": "blosc", "codec": "zstd", "clevel": 3, "shuffle": 2}
    if name == "lz4":
        return {"compression": "lz4"}
    raise ValueError(f"unknown compression {name!r}; choose one of {COMPRESSIONS}")
