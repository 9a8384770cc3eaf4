"""Who may reach a fleet's Pods (issue 24): the operator chart's `fleetNetworkPolicy`, read from the
operator's environment, becomes one NetworkPolicy per fleet; enforcement is shown on the cluster
(`tests/e2e/test_cluster.py::test_from_another_namespace_rays_ports_and_the_console_are_refused`)."""

from __future__ import annotations

import asyncio
import json

import pytest

from camerafleet.api.settings import FleetAccess, Settings, SettingsError
from camerafleet_operator import render
from camerafleet_operator.reconcile import reconcile_fleet
from camerafleet_operator.validate import ClusterPolicy
from tests.unit.test_reconcile import NS, FakeKafka, FakeKube, fleet

KUBERAY = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/component": "kuberay-operator"}}}
PROMETHEUS = {"ipBlock": {"cidr": "198.18.129.1/32"}}


def test_the_chart_value_reaches_the_operator_as_json_and_a_wrong_one_is_named():
    env = {"CAMERAFLEET_FLEET_NETWORK_POLICY": json.dumps({"kuberayFrom": [KUBERAY], "metricsFrom": [PROMETHEUS], "consoleFrom": []})}
    access = Settings.from_env(env).fleet_access
    assert access == FleetAccess(kuberay=[KUBERAY], metrics=[PROMETHEUS], console=[])
    assert Settings.from_env({}).fleet_access is None, "unset: no NetworkPolicy (a cluster without a policy agent)"
    with pytest.raises(SettingsError, match="CAMERAFLEET_FLEET_NETWORK_POLICY"):
        Settings.from_env({"CAMERAFLEET_FLEET_NETWORK_POLICY": json.dumps({"kuberayFrom": []})})
    with pytest.raises(SettingsError, match="CAMERAFLEET_FLEET_NETWORK_POLICY"):
        Settings.from_env({"CAMERAFLEET_FLEET_NETWORK_POLICY": "{not json"})


def test_a_fleets_pods_accept_only_each_other_kuberay_and_the_named_peers_on_their_ports():
    policy = render.network_policy("lobby", NS, FleetAccess(kuberay=[KUBERAY], metrics=[PROMETHEUS]))
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {render.LABEL_FLEET: "lobby"}} and spec["policyTypes"] == ["Ingress"]
    rules = [(r["from"], sorted(p["port"] for p in r.get("ports", []))) for r in spec["ingress"]]
    assert rules == [
        ([{"podSelector": {"matchLabels": {render.LABEL_FLEET: "lobby"}}}], []),
        ([KUBERAY], [render.SERVE_PORT, render.DASHBOARD_PORT]),
        ([PROMETHEUS], [render.METRICS_PORT, render.RUN_METRICS_PORT]),
    ], "no console peers: no console rule (a rule without peers would let everyone in)"
    assert policy["metadata"]["labels"][render.LABEL_FLEET] == "lobby"


def reconcile(body, kube, access):
    return asyncio.run(reconcile_fleet(body, kube, topic_admin=FakeKafka(), policy=ClusterPolicy(fleet_access=access)))  # type: ignore[arg-type]


def test_the_policy_comes_before_any_pod_and_goes_when_turned_off_but_a_strangers_stays():
    kube, body = FakeKube(), fleet()
    reconcile(body, kube, FleetAccess(kuberay=[KUBERAY]))
    assert kube.applied[0] == ("NetworkPolicy", "lobby-access"), "applied before anything that makes Pods"
    reconcile(body, kube, None)
    assert ("NetworkPolicy", NS, "lobby-access") not in kube.objects
    stranger = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "lobby-access", "namespace": NS}}
    asyncio.run(kube.apply(stranger))
    reconcile(body, kube, None)
    assert ("NetworkPolicy", NS, "lobby-access") in kube.objects, "a policy the operator did not make is not its to delete"
