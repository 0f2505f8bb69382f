"""The wheel a user installs: licence, metadata, the example config; a quiet build."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).parents[2]


def test_wheel_carries_license_metadata_and_example(tmp_path: Path) -> None:
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w",
                            str(tmp_path), str(REPO)], capture_output=True, text=True,
                           timeout=600)
    assert build.returncode == 0, build.stderr
    output = build.stdout + build.stderr
    assert "Deprecat" not in output, [line for line in output.splitlines() if "eprecat" in line]
    (wheel,) = tmp_path.glob("pyqrscp-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(archive.read(n).decode() for n in names if n.endswith("/METADATA"))
        example = archive.read("pyqrscp/example.cfg").decode()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "Classifier: Topic :: Scientific/Engineering :: Medical Science Apps." in metadata
    assert example == (REPO / "examples" / "dcmqrscp.cfg").read_text()
