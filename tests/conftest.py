import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture
def golden_data(tmp_path):
    """Copy a golden case's input tree into a temp dir so tests can edit it."""
    def copy(name: str) -> Path:
        dest = tmp_path / name / "data"
        shutil.copytree(GOLDEN / name / "data", dest)
        return dest
    return copy
