"""batchlib: incremental batch processing of mother-machine microscopy folders."""
__version__ = "0.1.0"
