from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def django() -> None:
    """Django configured for this process, with the test site's sessions table."""
    from . import django_site

    django_site.configure()
