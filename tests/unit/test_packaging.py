"""Operator packaging: the systemd unit (systemd-analyze verify, capability
set), the default config (loads with the agent's config loader), the
Kubernetes DaemonSet (schema-valid, no privileged: true, the same
capabilities) and the Helm chart (rendered here and compared with the
DaemonSet)."""
from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "contrib", "systemd", "kerneye.service")
CONFIG = os.path.join(ROOT, "contrib", "kerneye.yaml")
DAEMONSET = os.path.join(ROOT, "contrib", "k8s", "daemonset.yaml")
CHART = os.path.join(ROOT, "contrib", "helm", "kerneye")
K8S_VERSIONS = ("1.29", "1.37")

# What kerneye needs and why: contrib/systemd/kerneye.service.
CAPS = {"CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"}
K8S_CAPS = {c.removeprefix("CAP_") for c in CAPS}


# --- systemd -------------------------------------------------------------------------------

def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        k, _, v = line.partition("=")
        out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_capability_bounding_set_is_exactly_what_kerneye_needs() -> None:
    with open(UNIT) as f:
        s = unit_settings(f.read())
    assert s["CapabilityBoundingSet"] and len(s["CapabilityBoundingSet"]) == 1
    assert set(s["CapabilityBoundingSet"][0].split()) == CAPS
    assert s["AmbientCapabilities"] == [""]
    # the agent's own start-up check must not ask for more than the unit grants
    from kerneye.system import NEEDED_CAPS

    assert set(NEEDED_CAPS.values()) <= CAPS


def test_unit_settings() -> None:
    with open(UNIT) as f:
        s = unit_settings(f.read())
    assert s["ExecStart"] == ["/usr/local/bin/kerneye agent --config-file /etc/kerneye/kerneye.yaml"]
    assert s["Type"] == ["notify"]
    assert s["Restart"] == ["on-failure"]
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"]
    assert s["ProtectHome"] == ["read-only"]
    rw = s["ReadWritePaths"][0].split()
    assert {p.lstrip("-") for p in rw} >= {"/var/log/kerneye", "/run/kerneye", "/sys/fs/bpf"}
    # ProtectKernelTunables would make /sys read-only (no bpffs/tracefs mount)
    assert "ProtectKernelTunables" not in s


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_unit_verifies(tmp_path: Any) -> None:
    """systemd-analyze verify checks that ExecStart is executable, so a copy
    points it at /bin/true; everything else is the real unit."""
    with open(UNIT) as f:
        text = f.read()
    assert text.count("ExecStart=/usr/local/bin/kerneye ") == 1
    copy_ = tmp_path / "kerneye.service"
    copy_.write_text(text.replace("ExecStart=/usr/local/bin/kerneye ", "ExecStart=/bin/true "))
    r = subprocess.run(["systemd-analyze", "verify", str(copy_)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "kerneye.service" not in r.stderr, r.stderr  # no warning about our unit


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_unit_verify_catches_mistakes(tmp_path: Any) -> None:
    """Negative control: the verification is not vacuous."""
    bad = tmp_path / "kerneye.service"
    with open(UNIT) as f:
        bad.write_text(f.read().replace("ExecStart=/usr/local/bin/kerneye ", "ExecStart=relative/kerneye "))
    r = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def test_systemd_notify(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from kerneye import system

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert system.sd_notify("READY=1") is False
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert system.sd_notify("READY=1") is True
        assert srv.recv(64) == b"READY=1"


# --- the default config ------------------------------------------------------------------

def _agent_parser() -> argparse.ArgumentParser:
    from kerneye.cli.main import _parser

    p = _parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return sub.choices["agent"]


def test_default_config_loads() -> None:
    cf = pytest.importorskip("kerneye.config_file", reason="kerneye.config_file (config loader) is not there yet")
    ap = _agent_parser()
    ns = ap.parse_args([])
    used = cf.apply_config(ap, ns, [], [(CONFIG, cf.load_config_file(CONFIG))])
    assert used
    assert ns.export_file == "/var/log/kerneye/events.json"
    assert ns.output == "none"  # events never go to the journal
    assert ns.metrics_server == "127.0.0.1:2112"
    assert ns.export_file_compress is True and ns.export_file_rotation_interval == 86400


def test_default_config_commented_options_are_valid() -> None:
    """Every `# option: value` line shows a real option with a valid value."""
    cf = pytest.importorskip("kerneye.config_file", reason="kerneye.config_file (config loader) is not there yet")
    with open(CONFIG) as f:
        lines = [m.group(1) for m in (re.match(r"^# ([a-z][a-z0-9-]*: .*)$", ln) for ln in f) if m]
    assert len(lines) >= 10
    opts = yaml.safe_load("\n".join(lines))
    ap = _agent_parser()
    ns = ap.parse_args([])
    cf.apply_config(ap, ns, [], [("commented", opts)])
    # the example filters parse too
    filters = pytest.importorskip("kerneye.export.filters")
    fieldfilter = pytest.importorskip("kerneye.export.fieldfilter")
    redact = pytest.importorskip("kerneye.export.redact")
    assert filters.parse_filter_lines(ns.export_allowlist) and filters.parse_filter_lines(ns.export_denylist)
    assert fieldfilter.parse_field_filter_lines(ns.field_filters)
    assert redact.parse_redaction_filter_lines(ns.redaction_filters)


# --- Kubernetes --------------------------------------------------------------------------

def _docs(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def _walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{path}.{k}", k, v
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def _daemonset(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    return ds


def check_daemonset(docs: list[dict[str, Any]]) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    for d in docs:
        for ver in K8S_VERSIONS:
            kv.validate(d, ver, strict=True)
    for d in docs:
        for where, k, v in _walk(d):
            assert not (k == "privileged" and v is True), f"privileged: true at {where}"
    ds = _daemonset(docs)
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert not pod.get("hostNetwork")
    assert any(t.get("operator") == "Exists" for t in pod["tolerations"])
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == K8S_CAPS
    # the API server rejects allowPrivilegeEscalation: false with CAP_SYS_ADMIN
    assert sc.get("allowPrivilegeEscalation") is not False
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    hostpaths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    want = {"/sys/fs/bpf": False, "/sys/kernel/btf": True, "/sys/kernel/tracing": False, "/proc": True,
            "/run/kerneye": False, "/var/log/kerneye": False}
    for path, ro in want.items():
        names = [n for n, p in hostpaths.items() if p == path]
        assert names, f"no hostPath volume for {path}"
        assert bool(mounts[names[0]].get("readOnly")) == ro, path
    cfg = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kerneye-config")
    conf = yaml.safe_load(cfg["data"]["kerneye.yaml"])
    port = conf["metrics-server"].rpartition(":")[2]
    assert [p["containerPort"] for p in c["ports"]] == [int(port)]
    cf = pytest.importorskip("kerneye.config_file")
    ap = _agent_parser()
    cf.apply_config(ap, ap.parse_args([]), [], [("configmap", conf)])


def test_daemonset_manifest() -> None:
    check_daemonset(_docs(DAEMONSET))


def test_schema_validation_is_strict() -> None:
    """Negative control: an unknown field fails validation."""
    kv = pytest.importorskip("kubernetes_validate")
    ds = copy.deepcopy(_daemonset(_docs(DAEMONSET)))
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilitie"] = {}
    with pytest.raises(Exception):
        kv.validate(ds, K8S_VERSIONS[0], strict=True)


# --- Helm ------------------------------------------------------------------------------------

# No helm binary here: a renderer for the small subset of Go templates the
# chart uses ({{ .Values.a.b }}, .Release.*, .Chart.*, `| quote`,
# `| toYaml | nindent N`, {{- / -}} trimming). Anything else fails the test,
# so the chart stays within what is checked.
_TAG = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def _lookup(ctx: dict[str, Any], expr: str) -> Any:
    if not expr.startswith("."):
        raise AssertionError(f"unsupported template expression {expr!r}")
    cur: Any = ctx
    for part in expr[1:].split("."):
        cur = cur[part]
    return cur


def _to_yaml(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=False).rstrip("\n").removesuffix("\n...")


def _eval(ctx: dict[str, Any], expr: str) -> str:
    parts = [p.strip() for p in expr.split("|")]
    head = parts[0].split()
    if len(head) == 2:  # `toYaml .Values.x` = `.Values.x | toYaml`
        parts[0:1] = [head[1], head[0]]
    val: Any = _lookup(ctx, parts[0])
    for fn in parts[1:]:
        name, *args = fn.split()
        if name == "toYaml":
            val = _to_yaml(val)
        elif name == "nindent":
            pad = " " * int(args[0])
            val = "\n" + "\n".join(pad + ln if ln else ln for ln in str(val).split("\n"))
        elif name == "quote":
            val = '"' + str(val).replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            raise AssertionError(f"unsupported template function {name!r}")
    return val if isinstance(val, str) else str(val)


def render(template: str, ctx: dict[str, Any]) -> str:
    out: list[str] = []
    pos = 0
    for m in _TAG.finditer(template):
        text = template[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        out.append(text)
        out.append(_eval(ctx, m.group(2)))
        pos = m.end()
        if m.group(3):
            while pos < len(template) and template[pos].isspace():
                pos += 1
    out.append(template[pos:])
    return "".join(out)


def render_chart(release: str = "kerneye", namespace: str = "kerneye",
                 values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(CHART, "values.yaml")) as f:
        vals = yaml.safe_load(f)
    vals.update(values or {})
    ctx = {"Values": vals, "Release": {"Name": release, "Namespace": namespace},
           "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]}}
    docs: list[dict[str, Any]] = []
    tdir = os.path.join(CHART, "templates")
    for name in sorted(os.listdir(tdir)):
        if name.endswith(".yaml"):
            with open(os.path.join(tdir, name)) as f:
                docs += [d for d in yaml.safe_load_all(render(f.read(), ctx)) if d]
    return docs


def test_chart_metadata() -> None:
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    assert chart["apiVersion"] == "v2" and chart["name"] == "kerneye"
    from kerneye import __version__

    assert chart["appVersion"] == __version__


def test_helm_chart_renders_the_daemonset() -> None:
    docs = render_chart()
    check_daemonset(docs)
    # the defaults give the same pod as the plain manifest
    raw = _daemonset(_docs(DAEMONSET))
    got = _daemonset(docs)
    if got["spec"]["template"]["spec"].get("nodeSelector") == {}:
        del got["spec"]["template"]["spec"]["nodeSelector"]
    assert got["spec"] == raw["spec"]
    raw_cfg = {d["metadata"]["name"]: d for d in _docs(DAEMONSET) if d["kind"] == "ConfigMap"}
    got_cfg = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    assert set(got_cfg) == set(raw_cfg)
    assert yaml.safe_load(got_cfg["kerneye-config"]["data"]["kerneye.yaml"]) == yaml.safe_load(
        raw_cfg["kerneye-config"]["data"]["kerneye.yaml"])


def test_helm_values_flow_into_the_manifest() -> None:
    policy = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: x\nspec: {}\n"
    docs = render_chart(namespace="sec", values={
        "metrics": {"port": 9100}, "image": {"repository": "r/k", "tag": "9", "pullPolicy": "Always"},
        "nodeSelector": {"kubernetes.io/os": "linux"}, "tracingPolicies": {"x.yaml": policy}})
    check_daemonset(docs)
    ds = _daemonset(docs)
    pod = ds["spec"]["template"]["spec"]
    assert ds["metadata"]["namespace"] == "sec"
    assert pod["containers"][0]["image"] == "r/k:9"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9100"
    pols = next(d for d in docs if d["metadata"]["name"] == "kerneye-tracing-policies")
    assert pols["data"] == {"x.yaml": policy}


def test_renderer_rejects_what_it_does_not_check() -> None:
    with pytest.raises(AssertionError, match="unsupported"):
        render("{{ if .Values.x }}", {"Values": {"x": 1}})
    with pytest.raises(AssertionError, match="unsupported"):
        render("{{ .Values.x | b64enc }}", {"Values": {"x": 1}})
