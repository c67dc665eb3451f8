"""pyproject.toml and the conda environment files list the same dependencies."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: conda package name -> pip names it stands for
CONDA_TO_PIP = {"pytorch": ["torch"], "python-blosc": ["blosc"], "dask": ["dask[distributed]"],
                "distributed": ["dask[distributed]"]}
#: conda entries that are not dependencies of the package itself
CONDA_IGNORED = {"python", "pip", "cpuonly", "pytorch-gpu"}


def normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirement(req):
    """``"dask[distributed]>=2023.5"`` -> ``("dask[distributed]", ">=2023.5")``."""
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)\s*(.*?)\s*$", req)
    assert m, req
    name, spec = m.groups()
    base, _, extras = name.partition("[")
    return normalise(base) + (f"[{extras}" if extras else ""), spec.replace(" ", "")


def pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def setup_requirements():
    """The dependencies and every extra, read from pyproject.toml (setup.py only calls setup())."""
    project = pyproject()["project"]
    install, extras = project["dependencies"], project["optional-dependencies"]
    assert isinstance(install, list) and isinstance(extras, dict)
    # "all" names the package's own extras (batchlib[dask,gpu,test]).
    assert extras.get("all") == ["batchlib[" + ",".join(sorted(set(extras) - {"all"})) + "]"]
    reqs = list(install) + [r for name, group in extras.items() if name != "all" for r in group]
    return dict(split_requirement(r) for r in reqs), extras


def conda_requirements(path):
    import yaml

    env = yaml.safe_load(path.read_text())
    out, ignored = {}, set()
    for dep in env["dependencies"]:
        if not isinstance(dep, str):
            continue  # a nested pip: section would be listed here
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$", dep)
        name, spec = normalise(m.group(1)), m.group(2).replace(" ", "")
        if name in CONDA_IGNORED:
            ignored.add(name)
            continue
        for pip_name in CONDA_TO_PIP.get(name, [name]):
            if pip_name in out and out[pip_name] != spec:
                raise AssertionError(f"{path.name}: {name} {spec} disagrees with {out[pip_name]}")
            out[pip_name] = spec
    return env, out, ignored


@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_environment_matches_setup(flavour):
    pip, _ = setup_requirements()
    env, conda, ignored = conda_requirements(ROOT / f"environment-{flavour}.yaml")
    assert env["name"] == f"batchlib-{flavour}"
    missing, extra = sorted(set(pip) - set(conda)), sorted(set(conda) - set(pip))
    assert not missing and not extra, f"only in pyproject.toml: {missing}; only in the yaml: {extra}"
    differing = {n: (pip[n], conda[n]) for n in pip if pip[n] != conda[n]}
    assert not differing, f"version bounds differ (pyproject.toml, yaml): {differing}"
    assert ("cpuonly" if flavour == "cpu" else "pytorch-gpu") in ignored
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.startswith("python") for d in deps)
    # Both conda package names stand for dask[distributed].
    names = {normalise(re.split(r"[<>=! ]", d)[0]) for d in deps}
    assert {"dask", "distributed"} <= names


def test_setup_metadata():
    project = pyproject()["project"]
    assert project["scripts"] == {"batchlib": "batchlib.cli:main"}  # the `batchlib` console script
    assert "setup()" in (ROOT / "setup.py").read_text()  # kept, delegating to pyproject.toml
    pip, extras = setup_requirements()
    assert {"dask", "gpu", "test"} <= set(extras)
    assert "torch" in pip and "dask[distributed]" in pip and "pytest" in pip
    assert {"ruff", "mypy"} <= set(pip)  # make test runs them
    for name in ("numpy", "h5py", "z5py", "hdf5plugin", "pandas", "configargparse", "tqdm"):
        assert name in pip, name


def test_requirement_parsing():
    assert split_requirement("dask[distributed]>=2023.5") == ("dask[distributed]", ">=2023.5")
    assert split_requirement("scikit_image >= 0.21") == ("scikit-image", ">=0.21")
    assert split_requirement("tqdm") == ("tqdm", "")


def test_installed_version_matches():
    import batchlib

    text = (ROOT / "batchlib" / "_version.py").read_text()
    assert f'__version__ = "{batchlib.__version__}"' in text
