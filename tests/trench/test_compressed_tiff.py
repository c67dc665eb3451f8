"""Compressed TIFFs (LZW, Deflate, Zstandard, JPEG) through Ingest, and a codec that cannot be decoded."""
import json

import numpy as np
import pytest
import tifffile

from batchlib import JobError, run_workflow
from batchlib.io import open_file, read_attrs
from batchlib.trench.jobs import Ingest
from batchlib.trench.readers import InvalidAcquisitionError, open_acquisition

pytest.importorskip("imagecodecs")

T, C, H, W = 3, 2, 48, 56
RNG = np.random.default_rng(11)
MOVIE16 = RNG.integers(0, 4000, (T, C, H, W), dtype=np.uint16)
# JPEG in TIFF is 8-bit; smooth content so that the lossy error stays small
_yy, _xx = np.mgrid[:H, :W]
MOVIE8 = np.stack([np.stack([(100 + 60 * np.sin((_xx + 3 * t) / 6.0 + c) + _yy).astype(np.uint8)
                             for c in range(C)]) for t in range(T)])

CODECS = {  # name: (tifffile write arguments, data, tolerance)
    "lzw": ({"compression": "lzw"}, MOVIE16, 0),
    "lzw+predictor": ({"compression": "lzw", "predictor": True}, MOVIE16, 0),
    "deflate": ({"compression": "zlib"}, MOVIE16, 0),
    "zstd": ({"compression": "zstd"}, MOVIE16, 0),
    "jpeg": ({"compression": "jpeg", "compressionargs": {"level": 95}}, MOVIE8, 6),
}


def write(folder, layout, kwargs, data):
    folder.mkdir(parents=True)
    if layout == "stack":
        tifffile.imwrite(folder / "acq.tif", data, metadata={"axes": "TCYX"}, photometric="minisblack",
                         **kwargs)
    elif layout == "imagej":
        tifffile.imwrite(folder / "acq.tif", data, imagej=True, metadata={"axes": "TCYX"}, **kwargs)
    elif layout == "ome":
        tifffile.imwrite(folder / "acq.ome.tif", data, metadata={"axes": "TCYX"}, ome=True,
                         photometric="minisblack", **kwargs)
    else:
        for t in range(T):
            for c in range(C):
                tifffile.imwrite(folder / f"acq_t{t:03d}xy00c{c + 1}.tif", data[t, c],
                                 photometric="minisblack", **kwargs)


@pytest.mark.parametrize("layout", ["stack", "imagej", "ome", "sequence"])
@pytest.mark.parametrize("codec", sorted(CODECS))
def test_compressed_tiffs_ingest_with_their_values(tmp_path, layout, codec):
    kwargs, data, tol = CODECS[codec]
    raw, out = tmp_path / "raw", tmp_path / "out"
    write(raw, layout, kwargs, data)
    result = run_workflow("T", out, [Ingest(channel_kinds=["fluorescence"] * C)], input_folder=raw)
    assert result.success
    (path,) = out.glob("*.h5")
    with open_file(path, "r") as f:
        md = read_attrs(f)["acquisition"]
        # sequence files c1, c2 keep their numbers; stacks count from c0
        assert md["channels"] == (["c1", "c2"] if layout == "sequence" else ["c0", "c1"])
        for c, key in enumerate(md["channel_keys"]):
            movie = f[f"raw/{key}"][:]
            assert movie.dtype == data.dtype and movie.shape == (T, H, W)
            err = np.abs(movie.astype(int) - data[:, c].astype(int)).max()
            assert err <= tol, f"{codec} {layout}: max error {err}"
    if tol:  # lossy, but not garbage
        assert err > 0


def undecodable(path):
    """An LZW file whose Compression tag says a codec no decoder knows."""
    tifffile.imwrite(path, MOVIE16[:, 0], metadata={"axes": "TYX"}, photometric="minisblack",
                     compression="lzw")
    with tifffile.TiffFile(path, mode="r+") as tif:
        for page in tif.pages:
            page.tags["Compression"].overwrite(34999)


def test_undecodable_codec_is_named_with_the_file(tmp_path):
    undecodable(tmp_path / "odd.tif")
    with pytest.raises(InvalidAcquisitionError, match=r"odd\.tif: TIFF compression .*code 34999.* "
                                                      r"cannot be decoded"):
        open_acquisition(tmp_path / "odd.tif")
    # At Ingest it is an invalid input, recorded in the status with that reason.
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    undecodable(raw / "odd.tif")
    with pytest.raises(JobError, match="odd.tif"):
        run_workflow("T", out, [Ingest()], input_folder=raw)
    entry = json.loads((out / "batchlib" / "Ingest.status").read_text())["files"]["odd.tif"]
    assert entry["state"] == "invalid" and "code 34999" in entry["error"]
