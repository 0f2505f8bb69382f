"""pyqrscp: a pure-Python drop-in replacement for DCMTK's dcmqrscp."""

__version__ = "0.1.0"
