"""The header that opens a Ray dashboard with token authentication (`camerafleet.ray_auth`); the real Ray
head that checks it is in `tests/integration/test_ray_auth.py`."""

from __future__ import annotations

from camerafleet.ray_auth import HEADER, dashboard_headers


def test_the_token_comes_from_the_environment_or_a_file(tmp_path):
    assert dashboard_headers({"RAY_AUTH_TOKEN": " t0ken\n"}) == {HEADER: "Bearer t0ken"}
    (tmp_path / "token").write_text("from-a-file\n")
    assert dashboard_headers({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "token")}) == {HEADER: "Bearer from-a-file"}
    assert dashboard_headers({}) == {}, "a cluster without auth gets no header"
