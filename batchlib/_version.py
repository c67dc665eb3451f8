"""The library version, recorded in every completion record (its own module: no import cycle)."""
__version__ = "0.1.0"
