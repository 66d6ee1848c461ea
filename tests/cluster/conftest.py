"""The cluster tier runs only when asked for: `pytest -m cluster tests/cluster` (dev.py test-cluster).

pyproject's addopts carry `-m "not cluster"`, so a plain `pytest` deselects it (the default suite
stays fast and needs no PostgreSQL or Redis); a later `-m cluster` on the command line wins.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
