"""Kernel patch-series test pipeline: apply, configure, build, boot, test, report."""

__version__ = "0.1.0"
