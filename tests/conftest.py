import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Airflow reads its configuration once per process, when first imported: every test process gets an
# isolated one (a temporary home with SQLite, the repository's dags/, no examples) before any test
# imports Airflow in process (tests/test_dag_integrity.py). Tests that start Airflow in a subprocess
# set their own environment.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="payouts-tests-airflow-")
os.environ.update(
    AIRFLOW_HOME=_AIRFLOW_HOME,
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
)
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
