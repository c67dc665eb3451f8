"""The per-image container contract: every key, what it holds and who writes it.

Each key has one :class:`~batchlib.container_job.KeySpec` in :data:`SPECS`,
shared by the job that writes it (``output_keys``) and the jobs that read it
(``input_keys``): use :func:`specs` to declare them. What Ingest recorded
about the acquisition is read with :meth:`AcquisitionMeta.read`, and a
configured channel is found with :func:`resolve_channel`.

=============================  ==============================================
``raw/<channel>``              movie (T, Y, X), one frame per chunk (Ingest)
``tables/frames``              t, time_s per frame (Ingest)
root attribute ``acquisition`` normalised metadata (Ingest)
``tables/trenches``            one row per trench box (TrenchDetection)
``tables/drift``               t, dy, dx per frame (TrenchDetection)
``trench_crops/<channel>``     crops (n_trench, T, H, W) (Compress)
``overview/<channel>``         downsampled movie when raw is dropped (Compress)
``segmentation/<name>``        labels (n_trench, T, H, W) (Segment)
``tables/cells/<name>``        one row per cell and frame (Measure)
``tables/trenches_t``          one row per trench and frame (Measure)
``tables/tracks/<name>``       cell_id, parent_id... per cell and frame (Track)
``tables/cycles/<name>``       one row per tracked cell: its cell cycle (Track)
``tracking/<name>``            the trackers' state, to continue on new frames (Track)
``batchlib/<job>``             completion records (framework)
=============================  ==============================================

Next to the containers, one file per container (:func:`folder_output`;
Measure's and TrenchDetection's are listed with their size and checksum in
the completion record of the job that writes them):
``tables/cells/<container>.parquet`` (Measure),
``tables/tracks/<container>.parquet`` and ``tables/cycles/<container>.parquet``
(Track), ``qc/<container>_trenches.png`` (TrenchDetection) and
``qc/<container>_tracks.png`` (Track); ``tables/cells.csv`` is the optional
CSV export of all cell tables.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..container_job import KeySpec
from ..errors import InvalidInputError
from ..io import CONTAINER_EXTS, open_file, read_attrs
from .channels import ChannelChoiceError, choose_channel

RAW = "raw"
OVERVIEW = "overview"
FRAMES_TABLE = "tables/frames"
TRENCHES_TABLE = "tables/trenches"
DRIFT_TABLE = "tables/drift"
CROPS = "trench_crops"
SEGMENTATION = "segmentation"
#: Where the cells' free poles lie within their pixels, per segmentation (U-Net labels:
#: :mod:`batchlib.trench.segmentation.poles`), for sub-pixel lengths.
SEGMENTATION_POLES = "segmentation_poles"
CELLS_TABLE = "tables/cells"
TRENCH_FRAMES_TABLE = "tables/trenches_t"
ACQUISITION_ATTR = "acquisition"
TRACKS_TABLE = "tables/tracks"
CYCLES_TABLE = "tables/cycles"
TRACK_STATE = "tracking"

#: Folder-level outputs, next to the containers: one file per container, named
#: after it (see :func:`folder_output`), so two positions never share one.
CELLS_DATASET = "tables/cells"
TRACKS_DATASET = "tables/tracks"
CYCLES_DATASET = "tables/cycles"
QC_DIR = "qc"
#: The CSV export of every cell table of a folder (``--export_csv``).
CELLS_CSV = "tables/cells.csv"

_GROUP = KeySpec(kind="group")
_TABLE = KeySpec(kind="table")

#: What every key holds: one spec, shared by the job that writes the key and the
#: jobs that read it. ``<channel>`` and ``<name>`` stand for any item of a group.
SPECS = {
    RAW: _GROUP,
    f"{RAW}/<channel>": KeySpec(ndim=3),
    OVERVIEW: _GROUP,
    f"{OVERVIEW}/<channel>": KeySpec(ndim=3),
    FRAMES_TABLE: _TABLE,
    TRENCHES_TABLE: _TABLE,
    DRIFT_TABLE: _TABLE,
    CROPS: _GROUP,
    f"{CROPS}/<channel>": KeySpec(ndim=4),
    f"{SEGMENTATION}/<name>": KeySpec(ndim=4, dtype="ui"),
    SEGMENTATION_POLES: _GROUP,
    f"{SEGMENTATION_POLES}/<name>": KeySpec(ndim=4, dtype="u"),
    f"{CELLS_TABLE}/<name>": _TABLE,
    TRENCH_FRAMES_TABLE: _TABLE,
    f"{TRACKS_TABLE}/<name>": _TABLE,
    f"{CYCLES_TABLE}/<name>": _TABLE,
    f"{TRACK_STATE}/<name>": KeySpec(ndim=1, dtype="u"),
}


def spec(key: str) -> KeySpec:
    """The :class:`KeySpec` of ``key``: a key of :data:`SPECS`, or an item of one of its groups.

    The item may be named or a ``{param}`` placeholder of a job's keys.

    Examples
    --------
    >>> spec("segmentation/{name}") == spec("segmentation/cells") == KeySpec(ndim=4, dtype="ui")
    True
    >>> spec("tables/trenches").kind
    'table'
    """
    if key in SPECS:
        return SPECS[key]
    parent = key.rpartition("/")[0]
    for pattern, item_spec in SPECS.items():
        if pattern.endswith(">") and pattern.rpartition("/")[0] == parent:
            return item_spec
    raise KeyError(f"{key!r} is not a key of the trench container (see batchlib.trench.layout)")


def specs(*keys: str) -> dict:
    """``{key: spec(key)}``: a job's ``input_keys`` or ``output_keys``."""
    return {key: spec(key) for key in keys}


@dataclass(frozen=True)
class AcquisitionMeta:
    """What Ingest recorded about a container's acquisition (root attribute ``acquisition``).

    Attributes
    ----------
    channels : list of str
        The channels' names.
    channel_keys : list of str
        Their keys in the container (``raw/<key>``, ``trench_crops/<key>``).
    channel_kinds : list of str
        ``"phase"`` or ``"fluorescence"`` per channel.
    attrs : dict
        Everything Ingest recorded (times, stage position, pixel size...).
    """

    channels: list = field(default_factory=list)
    channel_keys: list = field(default_factory=list)
    channel_kinds: list = field(default_factory=list)
    attrs: dict = field(default_factory=dict)

    @classmethod
    def read(cls, container, keys_from: str | None = None) -> "AcquisitionMeta":
        """Read it from an open container.

        Parameters
        ----------
        keys_from : str, optional
            A group whose items are the channel keys when none were recorded
            (containers written without Ingest, e.g. by tests).
        """
        md = read_attrs(container).get(ACQUISITION_ATTR) or {}
        keys = md.get("channel_keys") or (sorted(container[keys_from].keys()) if keys_from else [])
        return cls(channels=list(md.get("channels", [])), channel_keys=list(keys),
                   channel_kinds=list(md.get("channel_kinds", ["fluorescence"] * len(keys))),
                   attrs=md)

    def kind(self, key: str) -> str | None:
        """The kind of the channel with container key ``key`` (None when unknown)."""
        return dict(zip(self.channel_keys, self.channel_kinds)).get(key)

    @property
    def pixel_size_um(self) -> float | None:
        return self.attrs.get("pixel_size_um")


def resolve_channel(container, channel: str, option: str = "--detect_channel", where: str = "") -> tuple:
    """``(key, kind)`` of a channel of an open container, given by name or key.

    ``""`` or ``"auto"`` is the first phase-like channel, else the first
    fluorescence one (kinds as Ingest recorded them). A channel that is not
    there is an :class:`InvalidInputError` listing the channels found and
    naming ``option``.
    """
    md = AcquisitionMeta.read(container)
    keys, names, kinds = md.channel_keys, md.channels, md.channel_kinds
    if not keys:
        raise InvalidInputError(f"{where + ': ' if where else ''}no channels recorded "
                                "(was the container written by Ingest?)")
    try:
        i = choose_channel(channel, names, keys, kinds, option=option, where=where)
    except ChannelChoiceError as e:
        raise InvalidInputError(str(e)) from None
    return keys[i], kinds[i]


def check_channel(path, channel: str, option: str) -> None:
    """Planning-time check that ``channel`` exists in the container at ``path``."""
    try:
        with open_file(path, "r") as f:
            resolve_channel(f, channel, option=option, where=str(path))
    except InvalidInputError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise InvalidInputError(f"{path}: cannot be read ({e})") from e


def container_stem(path) -> str:
    """A container's file name without its extension.

    >>> container_stem("/data/out/exp.v2_pos000.h5")
    'exp.v2_pos000'
    """
    name = os.path.basename(os.path.normpath(str(path)))
    root, ext = os.path.splitext(name)
    return root if ext in CONTAINER_EXTS else name


def folder_output(container, subfolder: str, suffix: str) -> str:
    """``<folder>/<subfolder>/<container stem><suffix>`` for the container at ``container``.

    >>> folder_output("out/exp_pos000.h5", CELLS_DATASET, ".parquet")
    'out/tables/cells/exp_pos000.parquet'
    """
    folder = os.path.dirname(os.path.normpath(str(container)))
    return os.path.join(folder, subfolder, container_stem(container) + suffix)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def channel_key(name: str) -> str:
    """A container-safe key for a channel name.

    >>> channel_key("5-FAM/pH 9.0"), channel_keys(["GFP", "GFP", "..x"])
    ('5-FAM_pH_9.0', ['GFP', 'GFP_1', 'x'])
    """
    # Leading dots go too: "." and ".." are directories in n5/zarr, not keys.
    key = _UNSAFE.sub("_", str(name)).strip("_").lstrip(".")
    return key or "channel"


def channel_keys(names) -> list:
    """Unique keys for a list of channel names."""
    keys, seen = [], {}
    for name in names:
        key = channel_key(name)
        n = seen.get(key, 0)
        seen[key] = n + 1
        keys.append(key if n == 0 else f"{key}_{n}")
    return keys
