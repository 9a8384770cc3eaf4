"""Where a running fleet reads changes to its manifest: the file it started from, or, in a Pod, the
ConfigMap behind that file.

A ConfigMap mounted as a volume is refreshed only when the kubelet next syncs the Pod (every minute by
default, plus jitter and its cache's delay), so a camera added with `kubectl patch` would wait a minute
or more. The operator names the ConfigMap (CAMERAFLEET_MANIFEST_CONFIGMAP) and lets the Pod's service
account `get` that one object, and the run reads it through the API server: seconds instead. The file
stays the fallback when the API refuses (a cluster without that grant), said once in the run's log.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from camerafleet.api.manifest import CONFIG_MAP_KEY
from camerafleet.kube_api import KubeApi, KubeApiError

log = logging.getLogger("camerafleet.run")


class ManifestUnreadable(RuntimeError):
    """The manifest could not be read this time; the message says why and what to check. `refused`: the API
    server answered and will keep saying no (no grant, no such ConfigMap), unlike a timeout or a restart."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class FileManifest:
    path: Path

    def describe(self) -> str:
        return str(self.path)

    def read(self) -> str:
        try:
            return self.path.read_text()
        except OSError as err:
            raise ManifestUnreadable(f"{self.path}: cannot read the manifest: {err.strerror}") from None


@dataclass(frozen=True)
class ConfigMapManifest:
    """One key of one ConfigMap in the Pod's namespace, read through the API server."""

    api: KubeApi
    name: str
    key: str = CONFIG_MAP_KEY

    @classmethod
    def in_cluster(cls, name: str, environ: dict[str, str] | None = None) -> ConfigMapManifest:
        """The ConfigMap `name` in this Pod's namespace, through the `kubernetes` Service."""
        try:
            return cls(KubeApi.in_cluster(environ), name)
        except KubeApiError as err:
            raise ManifestUnreadable(f"cannot read a ConfigMap: {err}") from None

    def describe(self) -> str:
        return f"ConfigMap {self.api.namespace}/{self.name}"

    def read(self) -> str:
        try:
            body = self.api.call("GET", self.api.path("v1", "configmaps", self.name))
        except KubeApiError as err:
            hint = {
                401: "the service account token was not accepted",
                403: "the Pod's service account may not get it (the operator grants that with a Role and RoleBinding named <fleet>-runner)",
                404: "it does not exist",
            }.get(err.code or 0)
            message = f"{self.describe()}: HTTP {err.code}: {hint}" if hint else f"{self.describe()}: {err}"
            raise ManifestUnreadable(message, refused=err.code in (401, 403, 404)) from None
        text = (body.get("data") or {}).get(self.key)
        if not isinstance(text, str):
            raise ManifestUnreadable(f"{self.describe()}: no key {self.key!r}")
        return text


class ManifestReader(Protocol):
    def describe(self) -> str: ...

    def read(self) -> str: ...


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class RunManifest:
    """Where a run reads its manifest's changes, and what it does when the API cannot answer.

    The ConfigMap (through the API) when the run has one, unless the API refuses from the start (a cluster
    without the operator's grant): then the file, which the kubelet refreshes, said once. A failed read
    otherwise waits for the next one: the file may be older, and going back to it would undo a change
    already applied. Reads block (5 s at most): call them from a thread."""

    file: ManifestReader
    api: ManifestReader | None = None
    say: Callable[[str], None] = print
    api_works: bool | None = None  # unknown until the API answers
    failing: bool = False  # said once per streak of failed reads, not every few seconds
    applied: str | None = None  # digest of the text last taken

    @classmethod
    def open(cls, path: Path, config_map: str | None, say: Callable[[str], None]) -> RunManifest:
        api = None
        if config_map:
            try:
                api = ConfigMapManifest.in_cluster(config_map)
            except ManifestUnreadable as err:
                say(f"manifest changes come from {path} only: {err}")
        run = cls(FileManifest(path), api, say)
        with contextlib.suppress(ManifestUnreadable):  # a run of a fleet built in memory has no file
            run.applied = digest(run.file.read())
        return run

    def read(self) -> tuple[str, str] | None:
        """The manifest's current text and where it came from, or None when it cannot be read this time."""
        if self.api is not None and self.api_works is not False:
            try:
                text = self.api.read()
            except ManifestUnreadable as err:
                if not (err.refused and self.api_works is None):
                    if not self.failing:
                        log.warning("cannot read the manifest (trying again): %s", err)
                    self.failing = True
                    return None
                self.api_works = False
                self.say(f"manifest changes come from {self.file.describe()}, refreshed by the kubelet (a minute or more): {err}")
            else:
                self.api_works, self.failing = True, False
                return text, self.api.describe()
        try:
            return self.file.read(), self.file.describe()
        except ManifestUnreadable as err:
            log.warning("%s", err)
            return None

    def change(self) -> tuple[str, str] | None:
        """The manifest's text and source when it differs from the one last taken (which it becomes), else None."""
        current = self.read()
        if current is None or digest(current[0]) == self.applied:
            return None
        self.applied = digest(current[0])
        return current
