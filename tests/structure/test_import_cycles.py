"""No import cycles in the library or the emulator; the checker itself catches each kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from .imports import cycles, edges, modules
from .support import write

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [name for name in ("oneinbox_asgi", "oneinbox_emulator") if (ROOT / name).is_dir()]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    known = modules(ROOT, package)
    assert len(known) > 5, known  # the walk found the package
    found = cycles(edges(known))
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(group) for group in found)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {"pkg/__init__.py": "", "pkg/a.py": "from . import b\n", "pkg/b.py": "import pkg.a\n"},
            [["pkg.a", "pkg.b"]],
            id="top-level",
        ),
        pytest.param(
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "from .b import x\n",
                "pkg/b.py": "def f():\n    from .a import y\n    return y\n",
            },
            [["pkg.a", "pkg.b"]],
            id="lazy import inside a function",
        ),
        pytest.param(
            {
                "pkg/__init__.py": "from .sub.a import thing\n",
                "pkg/sub/__init__.py": "",
                "pkg/sub/a.py": "from .. import other\n",
            },
            [["pkg", "pkg.sub.a"]],
            id="from a parent package's __init__",
        ),
        pytest.param(
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "from typing import TYPE_CHECKING\nfrom .b import x\n",
                "pkg/b.py": "import typing\nif typing.TYPE_CHECKING:\n    from .a import y\n",
            },
            [],
            id="TYPE_CHECKING imports do not count",
        ),
    ],
)
def test_the_checker_finds_each_kind_of_cycle(
    tmp_path: Path, files: dict[str, str], expected: list[list[str]]
) -> None:
    write(tmp_path, files)
    assert cycles(edges(modules(tmp_path, "pkg"))) == expected
