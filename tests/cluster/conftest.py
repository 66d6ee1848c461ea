"""The cluster tier runs only when asked for: `pytest -m cluster tests/cluster` (dev.py test-cluster).

A plain `pytest` over tests/ collects it but skips it, so the default suite stays fast and needs no
PostgreSQL or Redis. PAYOUTS_CLUSTER_TESTS=1 forces it on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def _cluster_requested(config: pytest.Config) -> bool:
    if os.environ.get("PAYOUTS_CLUSTER_TESTS") == "1":
        return True
    markexpr = (config.getoption("markexpr", default="") or "").replace(" ", "")
    return "cluster" in markexpr and "notcluster" not in markexpr


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cluster_requested(config):
        return
    skip = pytest.mark.skip(reason="cluster tier: run with `pytest -m cluster tests/cluster` (python3 dev.py test-cluster)")
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)
