"""The alerting rules: valid (`promtool check rules`), each alert unit-tested with `promtool test rules`
(fires when it should, quiet in its look-alike case), naming what it is about, with a runbook entry."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from camerafleet_dev.devservers.prometheus import promtool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "camerafleet-stack" / "alerts" / "camerafleet.rules.yaml"
RULE_TESTS = ROOT / "tests" / "alerts" / "camerafleet.rules.test.yaml"
README = ROOT / "README.md"


def alerts() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool()), *args], capture_output=True, text=True, timeout=120, check=False)


def test_the_rules_are_valid() -> None:
    proc = _promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_rule_tests_pass() -> None:
    proc = _promtool("test", "rules", str(RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_is_tested_firing() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {t["alertname"] for case in cases for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert {a["alert"] for a in alerts()} == fired


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_each_alert_names_its_subject_and_has_a_runbook(alert: dict) -> None:
    # The labels an alert is per (its first aggregation; the recording rule's is per fleet) all appear in its summary.
    groupings = re.findall(r"by \(([^)]*)\)", alert["expr"])
    per = set(groupings[0].replace(" ", "").split(",")) if groupings else {"fleet"}
    named = set(re.findall(r"\$labels\.([a-z_]+)", alert["annotations"]["summary"]))
    assert named >= per, f"{alert['alert']}: the summary names {sorted(named)}, the alert is per {sorted(per)}"
    assert alert["labels"]["severity"] in ("warning", "critical")
    assert f"#### `{alert['alert']}`" in README.read_text(), f"README has no runbook entry for {alert['alert']}"
