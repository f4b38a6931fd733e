"""The adversarial tests import the archive builders and the HTTP server of ``tests/``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
