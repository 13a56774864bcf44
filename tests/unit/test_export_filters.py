"""Unit tests for kerneye.export.filters (Tetragon's Filter language)."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kerneye.errors import ConfigError
from kerneye.export.filters import Filter, FilterSet, parse_filter_lines


def _proc(pid: int = 100, binary: str = "/usr/bin/curl", arguments: str = "https://example.org",
          **extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"exec_id": f"id{pid}", "pid": pid, "binary": binary, "arguments": arguments}
    p.update(extra)
    return p


def _event(kind: str = "process_exec", process: dict[str, Any] | None = None,
           parent: dict[str, Any] | None = None, **body: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"process": process if process is not None else _proc()}
    if parent is not None:
        b["parent"] = parent
    b.update(body)
    return {kind: b, "node_name": "node1", "time": "2026-01-01T00:00:00.000000000Z"}


EXEC = _event(
    process=_proc(100, "/usr/bin/curl", "-u bob https://example.org", docker="551e161c47d8ff0",
                  cap={"effective": ["CAP_CHOWN", "CAP_SYS_ADMIN"], "permitted": ["CAP_CHOWN", "CAP_SYS_ADMIN"]}),
    parent=_proc(50, "/bin/bash", "-c curl"),
    ancestors=[_proc(10, "/usr/sbin/sshd", "-D"), _proc(1, "/sbin/init", "")],
)
KPROBE = _event("process_kprobe", process=_proc(200, "/bin/cat", "/etc/passwd"),
                parent=_proc(50, "/bin/bash"), function_name="security_file_permission",
                policy_name="file-monitoring")
RATE_INFO = {"rate_limit_info": {"number_of_dropped_process_events": "3"}, "node_name": "n", "time": "t"}


def m(d: dict[str, Any], ev: dict[str, Any]) -> bool:
    return Filter.from_dict(d).matches(ev)


# --- one test per field: positive and negative ---------------------------------

def test_empty_filter_matches_everything() -> None:
    assert m({}, EXEC) and m({}, KPROBE) and m({}, RATE_INFO)


@pytest.mark.parametrize("value", ["PROCESS_EXEC", "process_exec", 1])
def test_event_set(value: Any) -> None:
    assert m({"event_set": [value]}, EXEC)
    assert not m({"event_set": [value]}, KPROBE)
    assert m({"event_set": ["PROCESS_KPROBE", value]}, KPROBE)
    assert m({"event_set": ["RATE_LIMIT_INFO"]}, RATE_INFO)


def test_binary_regex() -> None:
    assert m({"binary_regex": ["curl$"]}, EXEC)
    assert m({"binary_regex": ["nomatch", "bin/cu"]}, EXEC)  # search, values ORed
    assert not m({"binary_regex": ["^curl"]}, EXEC)
    assert not m({"binary_regex": [".*"]}, RATE_INFO)  # no process: never matches


def test_parent_binary_regex() -> None:
    assert m({"parent_binary_regex": ["bash$"]}, EXEC)
    assert not m({"parent_binary_regex": ["zsh$"]}, EXEC)
    assert not m({"parent_binary_regex": [".*"]}, _event())  # no parent


def test_ancestor_binary_regex() -> None:
    assert m({"ancestor_binary_regex": ["sshd"]}, EXEC)
    assert m({"ancestor_binary_regex": ["^/sbin/init$"]}, EXEC)
    assert not m({"ancestor_binary_regex": ["bash"]}, EXEC)  # the parent is not in ancestors
    assert not m({"ancestor_binary_regex": [".*"]}, KPROBE)  # no ancestors


def test_arguments_regex() -> None:
    assert m({"arguments_regex": ["example\\.org"]}, EXEC)
    assert not m({"arguments_regex": ["ebpf\\.io"]}, EXEC)


def test_parent_arguments_regex() -> None:
    assert m({"parent_arguments_regex": ["^-c"]}, EXEC)
    assert not m({"parent_arguments_regex": ["wget"]}, EXEC)


def test_pid() -> None:
    assert m({"pid": [1, 100]}, EXEC)
    assert not m({"pid": [50]}, EXEC)  # the parent's pid is not the process's


def test_pid_set_matches_process_parent_ancestor_and_learns_children() -> None:
    assert m({"pid_set": [100]}, EXEC)
    assert m({"pid_set": [50]}, EXEC)  # parent
    assert m({"pid_set": [10]}, EXEC)  # ancestor
    assert not m({"pid_set": [999]}, EXEC)
    f = Filter(pid_set=[50])
    child = _event(process=_proc(300), parent=_proc(50))
    grandchild = _event(process=_proc(301), parent=_proc(300))  # no ancestors in the event
    assert not Filter(pid_set=[50]).matches(grandchild)
    assert f.matches(child)
    assert f.matches(grandchild)  # 300 was learned as a descendant of 50
    assert f.matches(_event(process=_proc(302), parent=_proc(301)))


def test_namespace_only_empty_matches_as_kerneye_has_no_pods() -> None:
    assert m({"namespace": [""]}, EXEC)
    assert m({"namespace": ["", "kube-system"]}, KPROBE)
    assert not m({"namespace": ["default"]}, EXEC)
    assert not m({"namespace": [""]}, RATE_INFO)
    # Should a pod ever be present, its namespace is used.
    pod_ev = _event(process=_proc(pod={"namespace": "default", "name": "xwing"}))
    assert m({"namespace": ["default"]}, pod_ev) and not m({"namespace": [""]}, pod_ev)


def test_pod_regex_container_name_regex_labels_never_match_host_events() -> None:
    for d in ({"pod_regex": [".*"]}, {"container_name_regex": [".*"]}, {"labels": ["app"]},
              {"labels": [""]}, {"namespace_regex": [".*"]}):
        assert not m(d, EXEC), d
    pod_ev = _event(process=_proc(pod={"namespace": "default", "name": "xwing",
                                       "container": {"name": "spaceship"},
                                       "pod_labels": {"app": "xwing", "org": "alliance"}}))
    assert m({"pod_regex": ["^xw"]}, pod_ev) and not m({"pod_regex": ["tie"]}, pod_ev)
    assert m({"container_name_regex": ["ship$"]}, pod_ev)
    assert m({"namespace_regex": ["^def"]}, pod_ev)
    assert m({"labels": ["app=xwing,org in (alliance, rebels)"]}, pod_ev)
    assert m({"labels": ["app!=tie", "nope"]}, pod_ev)
    assert not m({"labels": ["app=xwing,!org"]}, pod_ev)
    assert not m({"labels": ["org notin (alliance)"]}, pod_ev)


def test_invalid_label_selector_is_rejected() -> None:
    with pytest.raises(ConfigError, match="label selector"):
        Filter(labels=["app==="])


def test_health_check() -> None:
    assert not m({"health_check": True}, EXEC)
    assert m({"health_check": False}, EXEC)


def test_container_id() -> None:
    assert m({"container_id": ["551e16"]}, EXEC)  # prefix
    assert m({"container_id": ["551e161c47d8ff0eb665438a7bcd5b4e3ef5a297282b40a92b7c77d6bd168eb3"]}, EXEC)
    assert m({"container_id": ["^551e1[0-9a-f]+$"]}, EXEC)  # regex
    assert not m({"container_id": ["deadbeef"]}, EXEC)
    assert not m({"container_id": ["1e16"]}, EXEC)  # anchored at the start
    assert not m({"container_id": [""]}, KPROBE)  # host process: no docker id


def test_policy_names() -> None:
    assert m({"policy_names": ["file-monitoring"]}, KPROBE)
    assert not m({"policy_names": ["other"]}, KPROBE)
    assert not m({"policy_names": ["file-monitoring"]}, EXEC)


@pytest.mark.parametrize("caps,expected", [
    ({"effective": {"any": ["CAP_SYS_ADMIN", "CAP_BPF"]}}, True),
    ({"effective": {"any": ["CAP_BPF"]}}, False),
    ({"effective": {"all": ["CAP_SYS_ADMIN", "CAP_CHOWN"]}}, True),
    ({"effective": {"all": ["CAP_SYS_ADMIN", "CAP_BPF"]}}, False),
    ({"effective": {"exactly": ["CAP_SYS_ADMIN", "CAP_CHOWN"]}}, True),
    ({"effective": {"exactly": ["CAP_SYS_ADMIN"]}}, False),
    ({"effective": {"none": ["CAP_BPF"]}}, True),
    ({"effective": {"none": ["CAP_SYS_ADMIN"]}}, False),
    ({"effective": {"any": ["sys_admin"], "none": ["CAP_BPF"]}}, True),  # ops ANDed, prefix optional
    ({"effective": {"any": [21]}}, True),  # number of CAP_SYS_ADMIN
    ({"permitted": {"any": ["CAP_CHOWN"]}, "inheritable": {"any": ["CAP_CHOWN"]}}, False),
    ({"inheritable": {"none": ["CAP_CHOWN"]}}, True),  # absent set = empty
])
def test_capabilities(caps: dict[str, Any], expected: bool) -> None:
    assert m({"capabilities": caps}, EXEC) is expected


def test_capabilities_need_cap_info() -> None:
    assert not m({"capabilities": {"effective": {"none": ["CAP_BPF"]}}}, KPROBE)


@pytest.mark.parametrize("bad", [
    {}, {"effective": {}}, {"bogus": {"any": ["CAP_KILL"]}}, {"effective": {"some": ["CAP_KILL"]}},
    {"effective": {"any": ["CAP_NOPE"]}}, {"effective": {"any": []}}, ["CAP_KILL"],
])
def test_capabilities_invalid(bad: Any) -> None:
    with pytest.raises(ConfigError, match="capabilit"):
        Filter(capabilities=bad)


def test_in_init_tree() -> None:
    assert m({"in_init_tree": False}, EXEC)  # container process, flag absent = false
    assert not m({"in_init_tree": True}, EXEC)
    in_tree = _event(process=_proc(docker="abc", in_init_tree=True))
    assert m({"in_init_tree": True}, in_tree)
    assert not m({"in_init_tree": False}, in_tree)
    assert not m({"in_init_tree": False}, KPROBE)  # host process never matches


def test_cel_expression() -> None:
    assert m({"cel_expression": ["process_exec.process.pid > 99"]}, EXEC)
    assert not m({"cel_expression": ["process_exec.process.pid > 100"]}, EXEC)
    assert m({"cel_expression": ['process_exec.process.binary.endsWith("/curl") && node_name == "node1"']}, EXEC)
    # only the event's own kind is defined: another kind's variable is no match
    assert not m({"cel_expression": ["process_kprobe.process.pid > 0"]}, EXEC)
    # expressions in the list are ORed
    assert m({"cel_expression": ["process_kprobe.process.pid > 0", "process_exec.process.pid == 100"]}, EXEC)
    assert m({"cel_expression": ['process_kprobe.policy_name == "file-monitoring"']}, KPROBE)
    # runtime errors and non-bool results never match
    assert not m({"cel_expression": ["1 / 0 == 1"]}, EXEC)
    assert not m({"cel_expression": ["'text'"]}, EXEC)


def test_cel_compiled_once_and_invalid_rejected() -> None:
    with pytest.raises(ConfigError, match=r"invalid CEL 'process_exec\.process\.pid >'.*column"):
        Filter(cel_expression=["process_exec.process.pid >"])
    with pytest.raises(ConfigError, match="empty"):
        Filter(cel_expression=[" "])


# --- combination semantics --------------------------------------------------------

def test_fields_in_one_filter_are_anded() -> None:
    assert m({"event_set": ["PROCESS_EXEC"], "binary_regex": ["curl"], "pid": [100]}, EXEC)
    assert not m({"event_set": ["PROCESS_EXEC"], "binary_regex": ["curl"], "pid": [1]}, EXEC)
    assert not m({"event_set": ["PROCESS_KPROBE"], "binary_regex": ["curl"]}, EXEC)


def test_filter_set_allow_deny_precedence() -> None:
    nothing = FilterSet()
    assert nothing.empty and nothing.allows(EXEC) and nothing.allows(KPROBE)

    allow = FilterSet(allow=parse_filter_lines('{"event_set":["PROCESS_EXEC"]}\n{"policy_names":["file-monitoring"]}'))
    assert allow.allows(EXEC) and allow.allows(KPROBE)  # ORed
    assert not allow.allows(RATE_INFO)  # an allowlist alone is default-deny

    deny = FilterSet(deny=[Filter(binary_regex=["cat$"])])
    assert deny.allows(EXEC) and not deny.allows(KPROBE)

    both = FilterSet(allow=[Filter(event_set=["PROCESS_EXEC", "PROCESS_KPROBE"])],
                     deny=[Filter(binary_regex=["curl"]), Filter(pid=[12345])])
    assert not both.allows(EXEC)  # deny wins over allow
    assert both.allows(KPROBE)
    assert not both.allows(RATE_INFO)


def test_allows_event_builds_dict_only_when_needed() -> None:
    calls = []

    class Ev:
        kind = "process_kprobe"

        def to_dict(self) -> dict[str, Any]:
            calls.append(1)
            return KPROBE

    assert FilterSet(allow=[Filter(event_set=["PROCESS_KPROBE"])]).allows_event(Ev())
    assert not FilterSet(allow=[Filter(event_set=["PROCESS_EXEC"], pid=[200])]).allows_event(Ev())
    assert calls == []
    assert FilterSet(allow=[Filter(pid=[200])]).allows_event(Ev())
    assert calls == [1]


def test_matching_never_mutates_or_raises_on_odd_events() -> None:
    snapshot = copy.deepcopy(EXEC)
    f = Filter(binary_regex=["x"], pid_set=[1], capabilities={"effective": {"any": ["CAP_KILL"]}},
               cel_expression=["process_exec.process.pid > 0"], labels=["a"])
    for ev in (EXEC, {}, {"process_exec": None}, {"process_exec": {"process": "str"}},
               {"process_exec": {"process": {"pid": "x", "binary": 3, "cap": []}}}, [], "x"):
        f.matches(ev)  # type: ignore[arg-type]
        FilterSet([f], [f]).allows(ev)  # type: ignore[arg-type]
    assert EXEC == snapshot


# --- parsing --------------------------------------------------------------------------

def test_parse_filter_lines_json_lines_and_round_trip() -> None:
    text = '{"event_set":["PROCESS_EXEC"],"binary_regex":["curl"]}\n\n  {"pid":[1,2]}\n'
    fs = parse_filter_lines(text)
    assert [f.to_dict() for f in fs] == [
        {"event_set": ["process_exec"], "binary_regex": ["curl"]}, {"pid": [1, 2]}]
    assert parse_filter_lines("") == [] and parse_filter_lines("  \n") == []
    # a pretty-printed object and a JSON array also work
    assert len(parse_filter_lines('{\n "pid": [1]\n}\n[{"pid":[2]},{"pid":[3]}]')) == 3
    for f in fs:
        assert Filter.from_dict(json.loads(json.dumps(f.to_dict()))) == f


def test_camel_case_keys_accepted() -> None:
    assert Filter.from_dict({"binaryRegex": ["curl"], "eventSet": ["PROCESS_EXEC"]}).matches(EXEC)


@pytest.mark.parametrize("text,match", [
    ('{"binary_regex":["(unclosed"]}', "invalid regex"),
    ('{"bogus":[1]}', "unknown filter field 'bogus'"),
    ('{"event_set":["PROCES_EXEC"]}', "unknown event type"),
    ('{"pid":[-1]}', "non-negative"),
    ('{"pid":"1"}', "list of non-negative integers"),
    ('{"in_init_tree":"yes"}', "true or false"),
    ('{"cel_expression":["a +"]}', "invalid CEL"),
    ('{"pid":[1]}\n{"pid":[2]', "invalid JSON at line 2"),
    ('["x"]', "must be a JSON object"),
    ('{"binary_regex":[1]}', "list of strings"),
])
def test_invalid_filters_raise_one_line_config_error(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        parse_filter_lines(text, "--export-allowlist")
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("--export-allowlist")
