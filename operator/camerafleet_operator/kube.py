"""A small Kubernetes client for the objects the operator owns: server-side apply, get, delete, list.

Server-side apply with one field manager makes every reconcile idempotent and restart-safe: applying
the same object twice changes nothing, and an operator killed mid-reconcile converges on its next pass
without duplicates (object names are derived from the fleet's name).

The methods are coroutines: each HTTP call runs in a worker thread with a timeout, so a slow or hung API
server never blocks the operator's event loop (its watches, timers and liveness endpoint go on).
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

FIELD_MANAGER = "camerafleet-operator"
REQUEST_TIMEOUT_S = (10.0, 30.0)  # (connect, read): a call to an API server that hangs fails instead of waiting forever
_PLURALS = {
    "ConfigMap": "configmaps",
    "Pod": "pods",
    "Secret": "secrets",
    "NetworkPolicy": "networkpolicies",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "RayService": "rayservices",
    "RayJob": "rayjobs",
    "CameraFleet": "camerafleets",
}


def object_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{_PLURALS[kind]}" if namespace else f"{base}/{_PLURALS[kind]}"
    return f"{path}/{name}" if name else path


class Kube:
    def __init__(self, api: ApiClient):
        self.api = api

    async def _call(
        self, method: str, path: str, *, body: Any = None, query: list | None = None, content_type: str = "application/json"
    ) -> Any:
        return await asyncio.to_thread(self._call_blocking, method, path, body, query, content_type)

    def _call_blocking(self, method: str, path: str, body: Any, query: list | None, content_type: str) -> Any:
        request = self.api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request, _request_timeout=REQUEST_TIMEOUT_S)
        response.read()
        return self.api.response_deserialize(response, {"2XX": "object"}).data

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return await self._call(
            "PATCH", path, body=obj, query=[("fieldManager", FIELD_MANAGER), ("force", "true")], content_type="application/apply-patch+yaml"
        )

    async def create(self, obj: dict[str, Any]) -> bool:
        """Create `obj` unless an object of its name exists (then nothing changes); whether it was created.
        For what must never be rewritten once made, such as a generated token."""
        meta = obj["metadata"]
        try:
            await self._call("POST", object_path(obj["apiVersion"], obj["kind"], meta["namespace"]), body=obj)
            return True
        except ApiException as err:
            if err.status == 409:
                return False
            raise

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", object_path(api_version, kind, namespace, name))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        try:
            await self._call("DELETE", object_path(api_version, kind, namespace, name), body={"propagationPolicy": "Background"})
            return True
        except ApiException as err:
            if err.status == 404:
                return False
            raise

    async def list(self, api_version: str, kind: str, namespace: str | None = None, labels: str | None = None) -> list[dict[str, Any]]:
        """The objects of a kind, those matching the label selector `labels` (e.g. `app=x,tier=y`) when given."""
        query = [("labelSelector", labels)] if labels else None
        return (await self._call("GET", object_path(api_version, kind, namespace), query=query))["items"]
