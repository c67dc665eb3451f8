"""batchlib: incremental, crash-safe batch processing of mother-machine microscopy."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "batchlib" / "__init__.py").read_text()).group(1)

# Keep in sync with environment-cpu.yaml and environment-gpu.yaml
# (tests/test_packaging.py checks that they agree).
INSTALL_REQUIRES = [
    "numpy>=1.24",
    "scipy>=1.10",
    "scikit-image>=0.21",
    "numba>=0.58",
    "threadpoolctl>=3.1",  # one BLAS thread per worker
    "h5py>=3.8",
    "hdf5plugin>=4.1",
    "blosc>=1.11",
    "z5py>=2.0",
    "pandas>=2.0",
    "pyarrow>=12",
    "tifffile>=2023.7.10",
    "imagecodecs>=2023.3.16",  # LZW, zstd, JPEG... compressed TIFFs
    "nd2>=0.8",
    "nd2reader>=3.3",
    "configargparse>=1.5",
    "tqdm>=4.60",
    "matplotlib>=3.7",
    "jinja2>=3.0",  # the HTML report
]
EXTRAS = {
    "dask": ["dask[distributed]>=2023.5", "dask-jobqueue>=0.8"],
    # torch is pinned exactly: the shipped U-Net weights are tested with it, and
    # an unpinned resolve can pull gigabytes of CUDA wheels.
    "gpu": ["torch==2.13.0"],
    # `batchlib export --format ome-zarr`: NGFF 0.4 (zarr v2 layout) through ome-zarr-py.
    "export": ["ome-zarr>=0.18", "zarr>=3"],
    "test": ["pytest>=7", "torch==2.13.0", "ome-zarr>=0.18", "zarr>=3"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="batchlib",
    version=VERSION,
    description=__doc__,
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["batchlib", "batchlib.*"]),
    # The trained segmentation model (weights and model card) ships with the package.
    package_data={"batchlib.trench.segmentation": ["models/*.pt", "models/*.md"],
                  "batchlib.trench.report": ["templates/*.j2"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["batchlib = batchlib.cli:main"]},
    license="MIT",
)
