"""A small Kubernetes client for the objects the operator owns: server-side apply, get, delete, list.

Server-side apply with one field manager makes every reconcile idempotent and restart-safe: applying
the same object twice changes nothing, and an operator killed mid-reconcile converges on its next pass
without duplicates (object names are derived from the fleet's name).
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

FIELD_MANAGER = "camerafleet-operator"
_PLURALS = {"ConfigMap": "configmaps", "RayService": "rayservices", "RayJob": "rayjobs", "CameraFleet": "camerafleets"}


def object_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{_PLURALS[kind]}" if namespace else f"{base}/{_PLURALS[kind]}"
    return f"{path}/{name}" if name else path


class Kube:
    def __init__(self, api: ApiClient):
        self.api = api

    def _call(self, method: str, path: str, *, body: Any = None, query: list | None = None, content_type: str = "application/json") -> Any:
        request = self.api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request)
        response.read()
        return self.api.response_deserialize(response, {"2XX": "object"}).data

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        return self._call("PATCH", path, body=obj, query=[("fieldManager", FIELD_MANAGER), ("force", "true")], content_type="application/apply-patch+yaml")

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", object_path(api_version, kind, namespace, name))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        try:
            self._call("DELETE", object_path(api_version, kind, namespace, name), body={"propagationPolicy": "Background"})
            return True
        except ApiException as err:
            if err.status == 404:
                return False
            raise

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", object_path(api_version, kind, namespace))["items"]
