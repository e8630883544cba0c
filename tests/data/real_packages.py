"""The packages scripts/fetch_demo_data.sh installs into the cache, for tests that read them."""

import pytest

from xm2_megatron.data import demo_sources as ds

LOCATOR = ds.SourceLocator()


def installed(path, what):
    """``path``, or skip the test when the package is not in the cache."""
    if path is None:
        pytest.skip(f"{what} not installed; run scripts/fetch_demo_data.sh (cache {LOCATOR.cache})")
    return path
