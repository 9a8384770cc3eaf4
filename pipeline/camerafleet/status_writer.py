"""A run's pools in its CameraFleet's status (`status.pools`), and an Event for each change of their size.

The operator owns the status except `status.pools` (api/pool_status.py): only the jobs' drivers know how
big their pools are and why. Each run merge-patches its own pool's key through the status subresource with
the Role the operator gives the jobs' service account (patch on this one fleet's status, create Events).
A run started by the operator is one that reads its fleet's ConfigMap (CAMERAFLEET_MANIFEST_CONFIGMAP);
any other run has no fleet object to write to. Calls are bounded (5 s); one that fails is logged once per
streak and never stops the run: the status is for people, and nothing in the ledger depends on it.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from camerafleet.api.manifest import API_VERSION, KIND, PLURAL
from camerafleet.api.pool_status import PoolStatus, now_rfc3339
from camerafleet.kube_api import KubeApi, KubeApiError

log = logging.getLogger("camerafleet.run")
COMPONENT = "camerafleet-run"


class StatusWriter:
    def __init__(self, api: KubeApi, fleet: str) -> None:
        self.api = api
        self.fleet = fleet
        self.uid: str | None = None  # the fleet's, from the first patch's answer: Events name the object by it too
        self.failing = False

    @classmethod
    def for_run(cls, config_map: str | None, fleet: str) -> StatusWriter | None:
        """The writer of a run the operator started, in its Pod; None for any other run."""
        if not config_map:
            return None
        try:
            return cls(KubeApi.in_cluster(), fleet)
        except KubeApiError as err:
            log.warning("the fleet's status will not show its pools: %s", err)
            return None

    def pools(self, pools: dict[str, PoolStatus]) -> None:
        """Merge `pools` (by pool name) into status.pools, each stamped with the time it was written."""
        stamped = {
            name: p.model_copy(update={"update_time": now_rfc3339()}).model_dump(by_alias=True, mode="json") for name, p in pools.items()
        }
        answer = self._call(
            "PATCH",
            self.api.path(API_VERSION, PLURAL, self.fleet, "status"),
            {"status": {"pools": stamped}},
            "application/merge-patch+json",
        )
        if answer is not None:
            self.uid = (answer.get("metadata") or {}).get("uid", self.uid)

    def event(self, reason: str, message: str, type_: str = "Normal") -> None:
        """One Event on the fleet, as `kubectl describe camerafleet` lists them."""
        when = now_rfc3339()
        involved: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND, "name": self.fleet, "namespace": self.api.namespace}
        if self.uid:
            involved["uid"] = self.uid
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{self.fleet}.", "namespace": self.api.namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message[:1000],
            "type": type_,
            "firstTimestamp": when,
            "lastTimestamp": when,
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": f"camerafleet.io/{COMPONENT}",
            "reportingInstance": socket.gethostname()[:128],
        }
        self._call("POST", self.api.path("v1", "events"), event)

    def _call(self, method: str, path: str, body: Any, content_type: str = "application/json") -> dict[str, Any] | None:
        try:
            answer = self.api.call(method, path, body, content_type)
        except KubeApiError as err:
            if not self.failing:
                hint = " (the operator's Role <fleet>-runner grants it)" if err.code == 403 else ""
                log.warning("cannot write the fleet's pools to its status or events (trying again): %s%s", err, hint)
            self.failing = True
            return None
        self.failing = False
        return answer
