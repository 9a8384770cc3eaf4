"""The run's own Prometheus endpoint serves the ledger it is given."""

import socket
import urllib.request
from collections import Counter

from camerafleet.api.outcomes import Reason
from camerafleet.driver_metrics import RunMetrics
from camerafleet.stats import CameraOutcomes, ProducerCameraStats


def test_ledger_is_scrapable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = RunMetrics(port, "demo")
    m.update(
        {"1": ProducerCameraStats(produced=10, source_up=True), "2": ProducerCameraStats(produced=3, source_up=False)},
        {"1": CameraOutcomes(processed=8, dropped=Counter({Reason.STALE: 1}), failed=Counter({Reason.DECODE_ERROR: 1}))},
        lag=2,
    )
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'camerafleet_run_frames{camera="1",fleet="demo",outcome="produced"} 10.0' in text
    assert 'camerafleet_run_frames{camera="1",fleet="demo",outcome="processed"} 8.0' in text
    assert 'camerafleet_run_frames{camera="1",fleet="demo",outcome="dropped"} 1.0' in text
    assert 'camerafleet_run_frames{camera="1",fleet="demo",outcome="failed"} 1.0' in text
    assert 'camerafleet_run_source_up{camera="2",fleet="demo"} 0.0' in text
    assert 'camerafleet_run_consumer_lag{fleet="demo"} 2.0' in text


def test_pool_sizes_busy_shares_and_scaling_decisions_are_scrapable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = RunMetrics(port, "demo")
    m.pool("producer", 2, 0.45)
    m.pool_scaled("consumer", 1, 3, "falling_behind")
    m.pool_scaled("consumer", 3, 2, "idle")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'camerafleet_run_pool_actors{fleet="demo",pool="producer"} 2.0' in text
    assert 'camerafleet_run_pool_busy{fleet="demo",pool="producer"} 0.45' in text
    assert 'camerafleet_run_pool_actors{fleet="demo",pool="consumer"} 2.0' in text
    up = 'camerafleet_run_pool_scaling_decisions_total{direction="up",fleet="demo",pool="consumer",reason="falling_behind"} 1.0'
    assert up in text
    assert 'camerafleet_run_pool_scaling_decisions_total{direction="down",fleet="demo",pool="consumer",reason="idle"} 1.0' in text
