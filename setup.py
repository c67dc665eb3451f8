"""batchlib: incremental, crash-safe batch processing of mother-machine microscopy.

Everything (metadata, dependencies, extras, entry points) is in pyproject.toml;
this file is kept for tools that still call ``python setup.py``.
"""
from setuptools import setup

setup()
