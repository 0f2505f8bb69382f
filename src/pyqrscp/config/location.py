"""Where the config file is found when ``-c`` does not name one: the working folder first,
then DCMTK's usual places, as dcmqrscp looks."""

from __future__ import annotations

from pathlib import Path

DEFAULT_CONFIG_PATHS = (
    Path("dcmqrscp.cfg"),
    Path("/etc/dcmtk/dcmqrscp.cfg"),
    Path("/usr/local/etc/dcmtk/dcmqrscp.cfg"),
)


def find_config(explicit: Path | None) -> Path:
    """The config file dcmqrscp would read: the named one, else the working folder, else system."""
    if explicit is not None:
        return explicit
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.exists():
            return candidate
    return DEFAULT_CONFIG_PATHS[0]
