"""Ingest: ND2 / TIFF acquisitions -> one container per field of view (position)."""
from __future__ import annotations

import dataclasses
import os


from ...base import BatchJob, Param, Unit
from ...errors import InvalidInputError, InvalidOutputError
from ...io import create_dataset, grow_dataset, open_file, read_attrs, write_attrs, write_table
from ..channels import LOW_CONFIDENCE, kind_from_data, kind_from_name
from ..layout import ACQUISITION_ATTR, FRAMES_TABLE, OVERVIEW, RAW, AcquisitionMeta, channel_keys, specs
from ..readers import (DEFAULT_SEQUENCE_PATTERN, InvalidAcquisitionError, find_acquisitions,
                       open_acquisition, output_stem)
from ..readers.sequence import position_signatures

CHANNEL_KIND_CHOICES = ("auto", "phase", "fluorescence")


#: Separates an acquisition's key from the position in Ingest's unit keys.
POSITION_SEP = "#pos"


def z_plane(value):
    """``"max"`` (maximum projection) or a plane index, from an option value.

    >>> z_plane("max"), z_plane(" 2 "), z_plane(3)
    ('max', 2, 3)
    """
    text = str(value).strip()
    if text == "max":
        return "max"
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"must be 'max' or a plane index, got {value!r}") from None


def container_name(acquisition: str, position: int, ext: str) -> str:
    """File name of one position's container: ``<acquisition>_pos<NNN><ext>``."""
    return f"{acquisition}_pos{position:03d}{ext}"


def unit_key(source_key: str, position: int, n_positions: int) -> str:
    """Status key of one position: the source's key, with ``#posNNN`` when it has several."""
    return source_key if n_positions <= 1 else f"{source_key}{POSITION_SEP}{position:03d}"


class Ingest(BatchJob):
    """Read ND2 / OME-TIFF / ImageJ / TIFF-sequence acquisitions into one container per position.

    Each channel becomes a movie ``raw/<channel>`` (T, Y, X), one frame per
    chunk. Every position is a unit of its own (status key
    ``<file>#pos<NNN>`` for multi-position files), so positions are ingested
    in parallel. When an acquisition grows (the microscope is still writing), a
    rerun appends only the new frames to the existing containers.
    """

    version = "1"
    params = {
        "backend": Param("auto", "reader: auto, nd2, nd2reader or tifffile",
                         choices=("auto", "nd2", "nd2reader", "tifffile")),
        "sequence_pattern": Param(DEFAULT_SEQUENCE_PATTERN,
                                  "regex with groups position, t, channel (and optionally name) "
                                  "that groups TIFF files into sequences"),
        "z_reduction": Param("max", "z-stacks: 'max' projection or a plane index",
                             parse=z_plane, hash_as=str),
        "channel_names": Param([], "names for the channels, one per channel in file order "
                               "(default: the file's names, else c<index>)"),
        "channel_kinds": Param([], "phase, fluorescence or auto, one per channel in file order "
                               "(default auto: from the name, else from the pixels)"),
        "phase_channels": Param([], "names of phase-contrast-like channels; the others are then "
                                "fluorescence (default: decided per channel, see channel_kinds)"),
        "pixel_size_um": Param(0.0, "pixel size in um for files that record none (plain TIFF); "
                               "a file's own value is kept (0: none)", unhashed_default=True),
        "hash_inputs": Param(False, "add a content hash of the input files to their signature"),
    }
    output_keys = specs(RAW, FRAMES_TABLE)
    update_in_place = True

    def __init__(self, output_ext=".h5", **params):
        super().__init__(input_pattern="*", output_ext=output_ext, **params)
        names, kinds = self.param_values["channel_names"], self.param_values["channel_kinds"]
        bad = [k for k in kinds if k not in CHANNEL_KIND_CHOICES]
        if bad:
            raise ValueError(f"{self.name}: channel_kinds {bad} not among {CHANNEL_KIND_CHOICES}")
        if len(set(map(str, names))) != len(names) or not all(str(n).strip() for n in names):
            raise ValueError(f"{self.name}: channel_names must be unique and non-empty, got {list(names)}")
        if not 0.0 <= self.param_values["pixel_size_um"] < 100.0:
            raise ValueError(f"{self.name}: pixel_size_um must be 0 (none) or a size in um, got "
                             f"{self.param_values['pixel_size_um']}")
        self._checked = {}  # source key -> (source, problem, kinds): validation once per acquisition and run
        #: Absolute paths of input files to leave out (set by a live session: files still being
        #: written). A sequence loses those members (their timepoints wait); any other
        #: acquisition waits whole.
        self.hidden_files = set()

    def __getstate__(self):
        return {**self.__dict__, "_checked": {}}  # workers need no validation cache

    @property
    def _z(self):
        return self.param_values["z_reduction"]

    def units_for(self, input_folder, folder, previous) -> list:
        """One unit per position (field of view), so positions ingest in parallel."""
        # Units of one acquisition already known with the same signature: their
        # positions and outputs are reused without opening the file again.
        known = {}
        for key, entry in previous.items():
            known.setdefault(key.split(POSITION_SEP)[0], []).append((key, entry))
        units = []
        for src in self._visible(input_folder):
            sigs = self._sequence_signatures(src)
            sig = sigs[0] if sigs else src.signature()
            if self.param_values["hash_inputs"] and not sigs:
                from ...io.checksum import content_hash

                sig["blake2b"] = [content_hash(f) for f in src.files]
            cached = known.get(src.key, [])
            if sigs:  # a sequence: positions counted from the file names, no file opened
                n = len(sigs)
            elif cached and all(e.get("input_signature") == sig and len(e.get("outputs") or []) == 1
                                for _, e in cached):
                n = len(cached)
            else:
                try:
                    with open_acquisition(src, backend=self.param_values["backend"]) as acq:
                        n = acq.n_positions
                except InvalidAcquisitionError:
                    n = 0  # one unit without outputs: validate_unit says why
            for p in range(max(n, 1)):
                outputs = [os.path.join(str(folder), container_name(output_stem(src), p, self.output_ext))] \
                    if n else []
                units.append(Unit(unit_key(src.key, p, n), [str(f) for f in src.files], outputs,
                                  signature=dict(sigs[p] if sigs else sig),
                                  run_kwargs={"source": src, "position": p}))
        return units

    def _visible(self, input_folder) -> list:
        """The acquisitions found, without the :attr:`hidden_files`."""
        sources = find_acquisitions(input_folder, sequence_pattern=self.param_values["sequence_pattern"])
        if not self.hidden_files:
            return sources
        out = []
        for src in sources:
            files = [f for f in src.files if os.path.abspath(f) not in self.hidden_files]
            if len(files) == len(src.files):
                out.append(src)
            elif files and src.format == "tiff-sequence":
                out.append(dataclasses.replace(src, files=files))
        return out

    def _sequence_signatures(self, src) -> list:
        """One input signature per position of a TIFF sequence: only that position's files of
        complete timepoints (see :func:`position_signatures`), so a file of a timepoint still
        being written changes nothing and a changed file reruns its own position only.
        ``[]`` for other formats, whose one file is the signature of every position."""
        if src.format != "tiff-sequence":
            return []
        hash_fn = None
        if self.param_values["hash_inputs"]:
            from ...io.checksum import content_hash as hash_fn
        try:
            return position_signatures(src.files, src.pattern or DEFAULT_SEQUENCE_PATTERN, hash_fn)
        except InvalidAcquisitionError:
            return []  # opened, and reported, by validate_unit

    def planned_channels(self, input_folder) -> list:
        """``{"path", "names", "keys", "problem"}`` of every acquisition found.

        Names as the containers will have them (after ``channel_names``), and
        the problem with the channel options if any; for checking a workflow's
        channel options before anything runs. Unreadable acquisitions are left
        out (Ingest reports them).
        """
        out = []
        for src in self._visible(input_folder):
            try:
                with open_acquisition(src, backend=self.param_values["backend"]) as acq:
                    names = self.channel_names(acq)
                    out.append({"path": str(src.path), "names": names, "keys": channel_keys(names),
                                "problem": self._channel_option_problem(acq)})
            except (InvalidAcquisitionError, ImportError, ValueError):
                continue
        return out

    def validate_unit(self, unit) -> None:
        src = unit.run_kwargs["source"]
        for f in src.files:
            super().validate_input(str(f))
        if not unit.outputs:
            try:
                with open_acquisition(src, backend=self.param_values["backend"]):
                    pass
            except InvalidAcquisitionError as e:
                raise InvalidInputError(str(e)) from e
            raise InvalidInputError(f"{src.path}: no positions found")
        # Positions of one acquisition share the checks (and the channel kinds,
        # decided once so that every position agrees): open the file once per run.
        checked = self._checked.get(src.key)
        # The positions of one listing share one source object (their signatures differ
        # for sequences, where each position is signed by its own files).
        if checked is None or checked[0] is not src:
            kinds = None
            try:
                with open_acquisition(src, backend=self.param_values["backend"]) as acq:
                    problem = None
                    if acq.n_timepoints == 0:
                        problem = f"{src.path}: no complete timepoint yet"
                    elif self._z != "max" and not 0 <= self._z < acq.n_z:
                        problem = f"{src.path}: z plane {self._z} requested, the acquisition has {acq.n_z}"
                    else:
                        problem = self._channel_option_problem(acq)
                    if problem is None:
                        # Any position's container will do: a new position gets the kinds
                        # the others were given.
                        folder = os.path.dirname(unit.outputs[0])
                        earlier = unit.outputs + [
                            os.path.join(folder, container_name(output_stem(src), p, self.output_ext))
                            for p in range(acq.n_positions)]
                        kinds = self.channel_kinds(acq, self._decided(earlier))
                        self._log_kinds(acq, kinds)
            except InvalidAcquisitionError as e:
                problem = str(e)
            checked = self._checked[src.key] = (src, problem, kinds)
        if checked[1]:
            raise InvalidInputError(checked[1])
        unit.run_kwargs["kinds"] = checked[2]

    def channel_names(self, acq) -> list:
        """The channels' names in the containers: ``channel_names`` or the file's."""
        return [str(n) for n in self.param_values["channel_names"]] or list(acq.channels)

    def _channel_option_problem(self, acq):
        found = ", ".join(acq.channels)
        for opt in ("channel_names", "channel_kinds"):
            given = self.param_values[opt]
            if given and len(given) != acq.n_channels:
                return (f"{acq.path}: {opt} gives {len(given)} value(s) for {acq.n_channels} "
                        f"channel(s) ({found}); set --ingest_{opt} with one value per channel")
        return None

    @staticmethod
    def _decided(outputs) -> dict:
        """Channel name -> kind decision from the pixels recorded in an earlier run.

        Reused when frames or positions are appended, so that the kind does not
        change (and no old frame is read again) while the microscope writes.
        """
        for path in outputs:
            if not os.path.exists(path):
                continue
            try:
                with open_file(path, "r") as f:
                    md = AcquisitionMeta.read(f).attrs
            except (OSError, ValueError, RuntimeError):
                continue
            if "channel_kind_sources" not in md:
                continue
            rows = zip(md.get("channels", []), md.get("channel_kinds", []),
                       md.get("channel_kind_sources", []), md.get("channel_kind_confidence", []))
            return {n: {"kind": k, "source": "data", "confidence": c}
                    for n, k, src, c in rows if src == "data"}
        return {}

    def channel_kinds(self, acq, decided=None) -> list:
        """``{"kind", "source", "confidence"}`` of every channel of an open acquisition.

        The kind comes from ``channel_kinds`` (source "option"), else from
        ``phase_channels`` ("phase_channels"), else from the channel's name
        ("name"), else from the first frame of up to three positions ("data";
        ``decided`` holds such decisions of an earlier run, by channel name).
        """
        import numpy as np

        decided = decided or {}
        names = self.channel_names(acq)
        given = list(self.param_values["channel_kinds"]) or ["auto"] * len(names)
        phase = set(map(str, self.param_values["phase_channels"]))
        out = []
        for c, (name, kind) in enumerate(zip(names, given)):
            if kind != "auto":
                out.append({"kind": kind, "source": "option", "confidence": 1.0})
            elif phase:
                hit = name in phase or acq.channels[c] in phase
                out.append({"kind": "phase" if hit else "fluorescence", "source": "phase_channels",
                            "confidence": 1.0})
            elif kind_from_name(name) or kind_from_name(acq.channels[c]):
                out.append({"kind": kind_from_name(name) or kind_from_name(acq.channels[c]),
                            "source": "name", "confidence": 1.0})
            elif name in decided:
                out.append(dict(decided[name]))
            else:
                positions = sorted({int(round(p)) for p in np.linspace(0, acq.n_positions - 1,
                                                                       min(3, acq.n_positions))})
                frames = [acq.read_frame(p, 0, c, z=self._z) for p in positions]
                kind, confidence = kind_from_data(frames)
                out.append({"kind": kind, "source": "data", "confidence": confidence})
        return out

    def _log_kinds(self, acq, kinds):
        names = self.channel_names(acq)
        text = ", ".join(f"{n}: {k['kind']} ({k['source']}"
                         + (f", confidence {k['confidence']:.2f})" if k["source"] == "data" else ")")
                         for n, k in zip(names, kinds))
        self.logger.info("%s: channel kinds %s", acq.path, text)

    def _unsure_kinds(self, acq, kinds) -> list:
        """Warnings for the kinds decided from the pixels with a low confidence."""
        names = self.channel_names(acq)
        return [f"{acq.path}: channel {n} looks {k['kind']} from its pixels, but only with "
                f"confidence {k['confidence']:.2f}; if that is wrong, set --ingest_channel_kinds: "
                f"phase, fluorescence or auto for each channel, in the order {' '.join(names)}"
                for n, k in zip(names, kinds)
                if k["source"] == "data" and k["confidence"] < LOW_CONFIDENCE]

    def validate_output(self, path) -> None:
        try:
            with open_file(path, "r") as f:
                attrs = read_attrs(f)
                md = attrs.get(ACQUISITION_ATTR)
                if not md:
                    raise InvalidOutputError(f"{path}: no acquisition metadata")
                if RAW not in f and OVERVIEW not in f:
                    raise InvalidOutputError(f"{path}: no {RAW} movies")
                for key in md["channel_keys"] if RAW in f else []:
                    ds = f[f"{RAW}/{key}"]
                    if ds.ndim != 3 or ds.shape[0] != md["n_timepoints_ingested"]:
                        raise InvalidOutputError(f"{path}: {RAW}/{key} has shape {ds.shape}, "
                                                 f"expected {md['n_timepoints_ingested']} frames")
        except InvalidOutputError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise InvalidOutputError(f"{path}: cannot be read ({e})") from e

    def run(self, input_files, output_files, source=None, position=0, kinds=None, **kwargs):
        with open_acquisition(source, backend=self.param_values["backend"]) as acq:
            if position >= acq.n_positions:
                raise RuntimeError(f"{source.path}: position {position} planned, the acquisition "
                                   f"has {acq.n_positions}")
            problem = self._channel_option_problem(acq)
            if problem:
                raise InvalidInputError(problem)
            kinds = kinds or self.channel_kinds(acq)
            for warning in self._unsure_kinds(acq, kinds):
                self.warn(warning)  # in this image's status entry and the log
            self._ingest_position(acq, position, output_files[0], kinds)

    def _ingest_position(self, acq, position, path, kinds):
        import numpy as np

        names = self.channel_names(acq)
        keys = channel_keys(names)
        n_t = acq.n_timepoints
        with open_file(path, "a") as f:
            done = self._frames_already_ingested(f, acq, keys, position)
            if done == 0 and RAW in f:
                for old in [k for k in f[RAW].keys() if k not in keys]:
                    del f[f"{RAW}/{old}"]  # channels renamed since the last run
            for key in keys:
                rkey = f"{RAW}/{key}"
                if done == 0:
                    create_dataset(f, rkey, shape=(n_t,) + tuple(acq.shape_yx), dtype=acq.dtype,
                                   chunks=(1,) + tuple(acq.shape_yx), growable=True)
                elif n_t > f[rkey].shape[0]:
                    grow_dataset(f, rkey, n_t)
            # Frame by frame (memory stays at a few frames whatever the movie
            # length), the next frames read while this one is compressed.
            movies = [f[f"{RAW}/{key}"] for key in keys]
            from ...io.frames import stream_frames

            stream_frames(movies, lambda t, c: _finite(acq.read_frame(position, t, c, z=self._z),
                                                       acq, position, t, names[c]),
                          [(t, c) for t in range(done, n_t) for c in range(len(keys))])
            md = acq.position_metadata(position, z=self._z)
            md.update(frames_signature=_frames_signature(acq, position, n_t))
            given = self.param_values["pixel_size_um"]
            if given and md.get("pixel_size_um") is None:
                # lengths in um, and the segmentation's magnification, need it
                md.update(pixel_size_um=float(given), pixel_size_source="--ingest_pixel_size_um")
            if names != list(acq.channels):
                md["channel_names_file"] = list(acq.channels)
            md.update(channels=names, channel_keys=keys, channel_kinds=[k["kind"] for k in kinds],
                      channel_kind_sources=[k["source"] for k in kinds],
                      channel_kind_confidence=[float(k["confidence"]) for k in kinds],
                      n_timepoints_ingested=n_t, acquisition=acq.name,
                      container=os.path.basename(path))
            times = np.array([np.nan if v is None else v for v in md["times_s"]], dtype=float)
            # plain columns: Ingest needs no pandas (0.3 s of its start-up)
            write_table(f, FRAMES_TABLE, {"t": np.arange(n_t, dtype=np.int64), "time_s": times[:n_t]})
            write_attrs(f, {ACQUISITION_ATTR: md})

    @staticmethod
    def _frames_already_ingested(f, acq, keys, position) -> int:
        """Frames that can be kept: 0 unless the container holds the same movie, shorter
        (for a sequence: the files of the kept frames are unchanged)."""
        md = read_attrs(f).get(ACQUISITION_ATTR)
        if not md or md.get("channel_keys") != keys or md.get("shape_yx") != list(acq.shape_yx) \
                or md.get("dtype") != str(acq.dtype):
            return 0
        done = int(md.get("n_timepoints_ingested", 0))
        if done > acq.n_timepoints or any(f"{RAW}/{k}" not in f or f[f"{RAW}/{k}"].shape[0] < done
                                          for k in keys):
            return 0
        if md.get("frames_signature") != _frames_signature(acq, position, done):
            return 0  # a file of an ingested frame was rewritten: read them all again
        return done


def _finite(frame, acq, position, t, channel):
    """``frame``, or :class:`InvalidInputError` when a float frame holds NaN or infinity
    (no later step can measure such a frame; say so here, naming it)."""
    import numpy as np

    if frame.dtype.kind == "f":
        bad = int(frame.size - np.count_nonzero(np.isfinite(frame)))
        if bad:
            raise InvalidInputError(
                f"{acq.path}: position {position}, frame t={t}, channel {channel!r}: {bad} of "
                f"{frame.size} pixels are NaN or infinite; replace them (e.g. by 0) in the float "
                "movie before ingesting it")
    return frame


def _frames_signature(acq, position, n_t):
    """Stat signature of the files of the first ``n_t`` frames of a position (sequences only)."""
    files = getattr(acq, "frame_files", None)
    if files is None:
        return None
    from ...records import param_hash

    sig = []
    for path in files(position, n_t):
        st = os.stat(path)
        sig.append([os.path.basename(path), st.st_size, st.st_mtime_ns])
    return param_hash({"files": sig})  # a short digest: thousands of files fit an attribute
