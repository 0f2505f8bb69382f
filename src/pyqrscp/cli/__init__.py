"""The command line: ``pyqrscp`` (the daemon), ``pyqrscp index``, ``ls`` and ``rm``."""

from pyqrscp.cli.command import main

__all__ = ["main"]
