"""The node clock's testing offset (gateway/clock.py, COCO_CLOCK_OFFSET_SECONDS)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from gateway import clock


def test_offset_parses_numbers_and_refuses_the_rest() -> None:
    assert clock._offset(None) == 0.0
    assert clock._offset("  ") == 0.0
    assert clock._offset("30") == 30.0
    assert clock._offset("-2.5") == -2.5
    for bad in ("soon", "nan", "inf", "1e12", "30s"):
        with pytest.raises(ValueError, match=clock.OFFSET_ENV):
            clock._offset(bad)


def test_now_is_the_wall_clock_plus_the_offset_read_at_import() -> None:
    code = "import time; from gateway import clock; print(clock.now() - time.time())"
    env = dict(os.environ, **{clock.OFFSET_ENV: "30"})
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert abs(float(out.stdout) - 30) < 1
    env[clock.OFFSET_ENV] = "later"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and clock.OFFSET_ENV in bad.stderr
    if not os.environ.get(clock.OFFSET_ENV):
        assert abs(clock.now() - time.time()) < 1
