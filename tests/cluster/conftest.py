from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(params=["sqlite"])
def cluster_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store that several processes can share."""
    return f"sqlite:///{tmp_path}/cluster.db"
