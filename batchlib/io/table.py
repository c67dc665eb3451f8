"""Tables stored as typed columns: one 1-D dataset per column.

Layout of a table ``name`` in a container::

    name/                      group, attrs: format, columns, dtypes, n_rows
    name/<column>              1-D dataset of the column's dtype
    name/<column>.offsets      (strings in n5/zarr only) end offset of each value

Integers, floats and bools keep their exact dtype; strings are UTF-8 and keep their pandas dtype (h5:
variable-length strings; n5/zarr: concatenated bytes plus offsets, since z5py
has no string type); datetimes are stored as int64 in their own unit. Missing
strings (None) are kept in a ``<column>.isnull`` dataset.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .files import create_dataset, is_h5, read_attrs, write_attrs

if TYPE_CHECKING:
    import pandas as pd

TABLE_FORMAT = "batchlib-table-1"


def _column_kind(series: pd.Series) -> str:
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        if getattr(dtype, "tz", None) is not None:
            raise TypeError(f"column {series.name!r}: time-zone aware datetimes are not supported")
        return str(dtype)  # keeps the unit (pandas 3 defaults to microseconds)
    if isinstance(dtype, pd.CategoricalDtype):
        return "str:object"
    if pd.api.types.is_string_dtype(dtype):
        # pandas has several string dtypes (object, "str", "string"); keep which one.
        return "str:" + ("object" if dtype == object else str(dtype))  # noqa: E721 - dtypes compare by ==
    if pd.api.types.is_numeric_dtype(dtype):
        return np.dtype(dtype).str
    raise TypeError(f"column {series.name!r}: dtype {dtype} cannot be stored in a table")


def write_table(container, name: str, table: pd.DataFrame | Mapping,
                compression="default") -> None:
    """Write a table as typed columns under ``name`` (replacing any old table).

    ``table`` is a DataFrame, or a mapping of column names to 1-D numeric or
    bool arrays of one length (written without importing pandas, for jobs
    that need no other table). The index is not stored; column names must be
    unique strings without "/".
    """
    if isinstance(table, Mapping):
        names = list(table.keys())
        values = [np.asarray(v) for v in table.values()]
        n_rows = len(values[0]) if values else 0
        kinds = [_array_kind(name, str(c), v, n_rows) for c, v in zip(names, values)]
    else:
        names, values = list(table.columns), [series for _, series in table.items()]
        n_rows = len(table)
        kinds = [_column_kind(series) for series in values]
    columns = [str(c) for c in names]
    if len(set(columns)) != len(columns):
        raise ValueError(f"table {name!r}: column names are not unique: {columns}")
    for col in columns:
        if "/" in col or col.endswith((".offsets", ".isnull")):
            raise ValueError(f"table {name!r}: invalid column name {col!r}")
    if name in container:
        del container[name]
    group = container.require_group(name)
    for col, kind, column in zip(columns, kinds, values):
        if not n_rows:
            continue  # an empty table is described by its attributes alone
        if kind.startswith("str:"):
            _write_strings(group, col, column, compression)
        elif kind == "bool":
            create_dataset(group, col, data=np.asarray(column, dtype=np.uint8), compression=compression)
        elif kind.startswith("datetime"):
            stamps = column.to_numpy(dtype=kind).view(np.int64)
            create_dataset(group, col, data=stamps, compression=compression)
        else:
            create_dataset(group, col, data=np.asarray(column), compression=compression)
    write_attrs(group, {"format": TABLE_FORMAT, "columns": columns, "dtypes": kinds,
                        "n_rows": int(n_rows)})


def _array_kind(table: str, col: str, values: np.ndarray, n_rows: int) -> str:
    """The stored kind of a numpy column (numbers and bools only: see :func:`write_table`)."""
    if values.ndim != 1 or len(values) != n_rows:
        raise ValueError(f"table {table!r}: column {col!r} has shape {values.shape}, "
                         f"expected ({n_rows},)")
    if values.dtype.kind == "b":
        return "bool"
    if values.dtype.kind in "iuf":
        return values.dtype.str
    raise TypeError(f"table {table!r}: column {col!r} of dtype {values.dtype}: only numbers "
                    "and bools can be written from arrays (pass a DataFrame)")


def _write_strings(group, col, series, compression):
    isnull = series.isna().to_numpy()
    values = ["" if null else str(v) for v, null in zip(series.tolist(), isnull)]
    if is_h5(group):
        import h5py

        group.create_dataset(col, data=np.array(values, dtype=object),
                             dtype=h5py.string_dtype("utf-8"))
    else:
        encoded = [v.encode("utf-8") for v in values]
        offsets = np.cumsum([len(b) for b in encoded], dtype=np.int64)
        create_dataset(group, col, data=np.frombuffer(b"".join(encoded), dtype=np.uint8),
                       compression=compression)
        create_dataset(group, col + ".offsets", data=offsets, compression=compression)
    if isnull.any():
        create_dataset(group, col + ".isnull", data=isnull.astype(np.uint8), compression=compression)


def _read_strings(group, col, n_rows, dtype):
    import pandas as pd

    if is_h5(group):
        values = [v.decode("utf-8") if isinstance(v, bytes) else v for v in group[col][:]]
    else:
        data = group[col][:].tobytes() if group[col].shape[0] else b""
        ends = group[col + ".offsets"][:]
        starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        values = [data[s:e].decode("utf-8") for s, e in zip(starts, ends)]
    if col + ".isnull" in group:
        for i in np.flatnonzero(group[col + ".isnull"][:]):
            values[i] = None
    return pd.Series(values, dtype=dtype)


def read_table(container, name: str, columns=None) -> pd.DataFrame:
    """Read a table written by :func:`write_table`.

    Parameters
    ----------
    columns : list of str, optional
        Read only these columns (in this order).
    """
    import pandas as pd

    if name not in container:
        raise KeyError(f"no table {name!r} in {getattr(container, 'filename', container)}")
    group = container[name]
    attrs = read_attrs(group)
    if attrs.get("format") != TABLE_FORMAT:
        raise ValueError(f"{name!r} is not a batchlib table (format={attrs.get('format')!r})")
    kinds = dict(zip(attrs["columns"], attrs["dtypes"]))
    wanted = attrs["columns"] if columns is None else list(columns)
    n_rows = int(attrs["n_rows"])
    data = {}
    for col in wanted:
        kind = kinds[col]
        if not n_rows:
            data[col] = pd.Series([], dtype=kind[4:] if kind.startswith("str:") else kind)
        elif kind.startswith("str:"):
            data[col] = _read_strings(group, col, n_rows, kind[4:])
        elif kind == "bool":
            data[col] = group[col][:].astype(bool)
        elif kind.startswith("datetime"):
            data[col] = group[col][:].astype(np.int64).view(kind)
        else:
            data[col] = group[col][:].astype(np.dtype(kind), copy=False)
    return pd.DataFrame(data, columns=wanted)
