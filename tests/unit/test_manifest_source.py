"""Where a running fleet reads manifest changes from, and what it does when the API cannot answer.

The ConfigMap read itself runs against a real API server with the operator's grant in
tests/controlplane/test_operator.py; here only the run's choice between the API and the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from camerafleet.manifest_source import ConfigMapManifest, FileManifest, ManifestUnreadable, RunManifest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo-fleet.yaml"


@dataclass
class ScriptedApi:
    """Answers reads in turn: a string is the ConfigMap's text, an exception is raised."""

    answers: list[str | Exception]
    reads: int = 0

    def describe(self) -> str:
        return "ConfigMap ns/fleet-config"

    def read(self) -> str:
        answer = self.answers[min(self.reads, len(self.answers) - 1)]
        self.reads += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


def watching(manifest: Path, api: ScriptedApi | None) -> tuple[RunManifest, list[str]]:
    said: list[str] = []
    return RunManifest(FileManifest(manifest), api, said.append), said


def test_a_file_that_cannot_be_read_names_itself(tmp_path: Path) -> None:
    with pytest.raises(ManifestUnreadable, match=r"missing\.yaml: cannot read the manifest"):
        FileManifest(tmp_path / "missing.yaml").read()


def test_outside_a_pod_there_is_no_config_map_to_read() -> None:
    with pytest.raises(ManifestUnreadable, match="not in a Pod"):
        ConfigMapManifest.in_cluster("fleet-config", environ={})


def test_without_the_api_the_file_is_read() -> None:
    r, _ = watching(DEMO, None)
    assert r.read() == (DEMO.read_text(), str(DEMO))


def test_an_api_that_never_answered_falls_back_to_the_file_and_says_so_once() -> None:
    api = ScriptedApi([ManifestUnreadable("ConfigMap ns/fleet-config: HTTP 403: may not get it", refused=True)])
    r, said = watching(DEMO, api)
    assert r.read() == (DEMO.read_text(), str(DEMO))
    assert r.read() == (DEMO.read_text(), str(DEMO))
    assert api.reads == 1, "a refusing API is not asked again every few seconds"
    assert len(said) == 1 and "HTTP 403" in said[0] and "refreshed by the kubelet" in said[0]


def test_an_api_that_cannot_be_reached_yet_is_tried_again_not_given_up() -> None:
    api = ScriptedApi([ManifestUnreadable("ConfigMap ns/fleet-config: connection refused"), DEMO.read_text()])
    r, _ = watching(DEMO, api)
    assert r.read() is None
    assert r.read() == (DEMO.read_text(), "ConfigMap ns/fleet-config")


def test_once_the_api_answered_a_failed_read_waits_instead_of_going_back_to_an_older_file() -> None:
    newer = DEMO.read_text().replace("name: demo", "name: demo-newer")
    api = ScriptedApi([newer, ManifestUnreadable("ConfigMap ns/fleet-config: HTTP 403: may not get it", refused=True), newer])
    r, _ = watching(DEMO, api)
    assert r.read() == (newer, "ConfigMap ns/fleet-config")
    assert r.read() is None
    assert r.read() == (newer, "ConfigMap ns/fleet-config")


def test_a_change_is_taken_once_and_an_unchanged_manifest_is_no_change(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(DEMO.read_text())
    r = RunManifest.open(path, None, print)
    assert r.change() is None, "the manifest the run started from is not a change"
    path.write_text(DEMO.read_text().replace("name: demo", "name: demo-newer"))
    assert r.change() == (path.read_text(), str(path))
    assert r.change() is None
