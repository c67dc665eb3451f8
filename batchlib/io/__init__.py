"""Container I/O: one interface over h5 (h5py) and n5/zarr (z5py)."""
from .compression import COMPRESSIONS, DEFAULT_COMPRESSION
from .files import (CONTAINER_EXTS, container_format, create_dataset, grow_dataset, is_h5,
                    open_file, read_attrs, remove_container, replace_container, write_attrs)
from .image import downsample, image_attrs, read_image, write_image
from .table import read_table, write_table

__all__ = [
    "COMPRESSIONS", "DEFAULT_COMPRESSION", "CONTAINER_EXTS", "container_format", "create_dataset",
    "grow_dataset", "is_h5", "open_file", "read_attrs", "remove_container", "replace_container",
    "write_attrs", "downsample", "image_attrs", "read_image", "write_image", "read_table", "write_table",
]
