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


# The longest tests start first, so that `dev.py test`'s workers (pytest-xdist) do not end with one
# of them still running a two-minute test while the others wait.
LONGEST_FIRST = ("test_properties.py", "test_tiers.py", "test_dag_e2e.py", "test_atomicity.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept otherwise
