"""Container I/O: one interface over h5 (h5py) and n5/zarr (z5py)."""
from .compression import COMPRESSIONS, DEFAULT_COMPRESSION
from .files import (CONTAINER_EXTS, container_format, create_dataset, grow_dataset, is_h5,
                    open_file, read_attrs, remove_container, replace_container, write_attrs)


# pandas (tables) and numpy (images) take most of the start-up time: these
# wrappers import them on first use, so that the command line and a "nothing
# to do" rerun start fast.
def read_table(container, name, columns=None):
    """See :func:`batchlib.io.table.read_table`."""
    from .table import read_table as read

    return read(container, name, columns=columns)


def write_table(container, name, table, compression="default"):
    """See :func:`batchlib.io.table.write_table`."""
    from .table import write_table as write

    return write(container, name, table, compression=compression)


def read_image(*args, **kwargs):
    """See :func:`batchlib.io.image.read_image`."""
    from .image import read_image as read

    return read(*args, **kwargs)


def write_image(*args, **kwargs):
    """See :func:`batchlib.io.image.write_image`."""
    from .image import write_image as write

    return write(*args, **kwargs)


def image_attrs(*args, **kwargs):
    """See :func:`batchlib.io.image.image_attrs`."""
    from .image import image_attrs as attrs

    return attrs(*args, **kwargs)


__all__ = [
    "COMPRESSIONS", "DEFAULT_COMPRESSION", "CONTAINER_EXTS", "container_format", "create_dataset",
    "grow_dataset", "is_h5", "open_file", "read_attrs", "remove_container", "replace_container",
    "write_attrs", "image_attrs", "read_image", "write_image", "read_table", "write_table",
]
