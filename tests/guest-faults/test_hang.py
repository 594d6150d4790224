"""Guest fault: a test that never returns (the host's test timeout must end it)."""

import os
import time

import pytest

# Fault modules must never run on the host (they hang, OOM, or write to the kernel log):
# the guest init sets PIPELINE_RESULTS, the host never does.
pytestmark = pytest.mark.skipif("PIPELINE_RESULTS" not in os.environ,
                                reason="guest fault module: runs only inside the test guest")


def test_before_hang():
    pass


def test_never_returns():
    time.sleep(3600)


def test_after_hang():
    pass
