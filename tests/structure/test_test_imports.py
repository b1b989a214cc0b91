"""The tests' own rule: a module of the test tree imports shared helpers from support
modules (tests/support.py, or a package's own support module), never from a test module
(``test_*.py``) or a ``conftest.py``; the checker itself catches each way of doing so."""

from __future__ import annotations

from pathlib import Path

import pytest

from .imports import borrowed, edges, modules
from .support import write

ROOT = Path(__file__).resolve().parents[2]


def test_no_module_of_the_tests_imports_a_test_module_or_a_conftest() -> None:
    known = modules(ROOT, "tests")
    assert "tests.support" in known and "tests.guards.conftest" in known  # the walk found them
    assert sum(name.rpartition(".")[2].startswith("test_") for name in known) > 20
    found = borrowed(edges(known, type_checking=True))
    assert found == [], "import from a test module or a conftest: " + "; ".join(
        f"{name} imports {target}" for name, target in found
    )


PACKAGE = {
    "tests/__init__.py": "",
    "tests/support.py": "HELPER = 1\n",
    "tests/conftest.py": "import pytest\nHELPER = 1\n",
    "tests/test_a.py": "HELPER = 1\n",
    "tests/sub/__init__.py": "",
    "tests/sub/conftest.py": "HELPER = 1\n",
    "tests/sub/support.py": "from ..support import HELPER\n",
}


@pytest.mark.parametrize(
    ("importer", "source", "expected"),
    [
        pytest.param(
            "tests/test_b.py", "from .test_a import HELPER\n", "tests.test_a", id="from .test_x"
        ),
        pytest.param(
            "tests/test_b.py", "from . import test_a\n", "tests.test_a", id="from . import"
        ),
        pytest.param(
            "tests/sub/test_b.py",
            "from ..test_a import HELPER\n",
            "tests.test_a",
            id="from a parent",
        ),
        pytest.param("tests/test_b.py", "import tests.test_a\n", "tests.test_a", id="absolute"),
        pytest.param(
            "tests/sub/test_b.py",
            "from .conftest import HELPER\n",
            "tests.sub.conftest",
            id="from .conftest",
        ),
        pytest.param(
            "tests/sub/test_b.py",
            "from tests.conftest import HELPER\n",
            "tests.conftest",
            id="from the root conftest",
        ),
        pytest.param(
            "tests/sub/test_b.py",
            "def f():\n    from ..test_a import HELPER\n    return HELPER\n",
            "tests.test_a",
            id="lazy import inside a function",
        ),
        pytest.param(
            "tests/sub/test_b.py",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from .conftest import HELPER\n",
            "tests.sub.conftest",
            id="under TYPE_CHECKING",
        ),
        pytest.param(
            "tests/sub/support.py",
            "from ..test_a import HELPER\n",
            "tests.test_a",
            id="a support module borrowing from a test module",
        ),
    ],
)
def test_the_checker_finds_each_way_of_borrowing(
    tmp_path: Path, importer: str, source: str, expected: str
) -> None:
    write(tmp_path, {**PACKAGE, importer: source})
    graph = edges(modules(tmp_path, "tests"), type_checking=True)
    importer_name = importer.removesuffix(".py").replace("/", ".")
    assert borrowed(graph) == [(importer_name, expected)]


def test_the_checker_allows_support_modules() -> None:
    """The control: imports from support modules, the package itself, and elsewhere pass."""
    graph = {
        "tests.test_b": {"tests.support", "tests.sub.support", "tests"},
        "tests.sub.test_c": {"tests.sub.support", "tests.sub.lkpeer"},
        "tests.sub.support": {"tests.support"},
    }
    assert borrowed(graph) == []
