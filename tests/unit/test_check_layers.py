"""scripts/check-layers: every kind of import is seen (absolute, relative, inside a function,
under ``if TYPE_CHECKING:``), each layer imports only what its row of ALLOWED names, and the
package's own tree is clean."""

from __future__ import annotations

import contextlib
import functools
import io
import runpy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

CHECKER = Path(__file__).resolve().parents[2] / "scripts" / "check-layers"


@functools.cache
def checker_main() -> Callable[[Sequence[str]], int]:
    """The script's ``main``, loaded once into this interpreter."""
    return cast(Callable[[Sequence[str]], int],
                runpy.run_path(str(CHECKER), run_name="check_layers")["main"])


@dataclass(frozen=True, slots=True)
class Checked:
    returncode: int
    stdout: str


def check(src: Path) -> Checked:
    """``check-layers SRC``: its exit code and what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        returncode = checker_main()([str(src)])
    return Checked(returncode, printed.getvalue())


def tree(tmp_path: Path, modules: dict[str, str]) -> Path:
    """A package ``pyqrscp`` under ``tmp_path/src`` with the given modules (dotted names
    below ``pyqrscp``; every folder gets an __init__)."""
    src = tmp_path / "src"
    for name, text in {"__init__": "", "errors": "", "dimse.__init__": "",
                       "link.__init__": "", "services.__init__": "", **modules}.items():
        path = src / "pyqrscp" / Path(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return src


def test_the_package_itself_is_clean() -> None:
    result = check(CHECKER.parents[1] / "src")
    assert (result.returncode, result.stdout) == (0, "")


def test_a_downward_import_of_every_kind_is_allowed(tmp_path: Path) -> None:
    src = tree(tmp_path, {
        "dimse.pdus": "from pyqrscp.errors import *\n",
        "link.channel": "from ..dimse import pdus\n"
                        "def later():\n    import pyqrscp.dimse.pdus\n",
    })
    result = check(src)
    assert (result.returncode, result.stdout) == (0, "")


@pytest.mark.parametrize("kind, text", [
    ("absolute", "from pyqrscp.services import x\n"),
    ("relative", "from ..services import x\n"),
    ("relative module", "from .. import services\n"),
    ("inside a function", "def later():\n    from pyqrscp.services import x\n"),
    ("plain import inside a method",
     "class C:\n    def later(self):\n        import pyqrscp.services\n"),
    ("TYPE_CHECKING", "from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from pyqrscp.services import x\n"),
])
def test_an_upward_import_of_any_kind_is_refused(tmp_path: Path, kind: str, text: str) -> None:
    src = tree(tmp_path, {"link.channel": text})
    result = check(src)
    assert result.returncode == 1, kind
    assert "pyqrscp.link.channel imports pyqrscp.services" in result.stdout, kind


def test_a_layer_beside_is_refused(tmp_path: Path) -> None:
    """link and archive share a row: neither may import the other."""
    src = tree(tmp_path, {"archive.__init__": "", "link.channel": "import pyqrscp.archive\n"})
    result = check(src)
    assert result.returncode == 1
    assert "link may not import archive" in result.stdout


@pytest.mark.parametrize("kind, back", [
    ("TYPE_CHECKING", "from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from pyqrscp.services import Services\n"),
    ("relative", "from . import Services\n"),
    ("inside a function", "def later():\n    from pyqrscp.services import Services\n"),
])
def test_a_cycle_through_any_kind_of_import_is_refused(tmp_path: Path, kind: str,
                                                       back: str) -> None:
    src = tree(tmp_path, {"services.__init__": "from pyqrscp.services import find\n"
                                               "class Services: ...\n",
                          "services.find": back})
    result = check(src)
    assert result.returncode == 1, kind
    assert "import cycle: pyqrscp.services -> pyqrscp.services.find" in result.stdout, kind


def test_a_module_outside_the_layers_is_named(tmp_path: Path) -> None:
    result = check(tree(tmp_path, {"gadgets.__init__": ""}))
    assert result.returncode == 1
    assert "pyqrscp.gadgets: not in a known layer" in result.stdout
