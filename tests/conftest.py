import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("BATCHLIB_SHARED_DATA",
                                  Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data():
    """The real fixtures in ``../shared/data``; tests using them skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real fixtures not found at {SHARED_DATA} (set BATCHLIB_SHARED_DATA)")
    return SHARED_DATA
