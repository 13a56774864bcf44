"""Unit tests for kerneye.export.redact."""
from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from kerneye.errors import ConfigError
from kerneye.export.redact import REDACTED, RedactionFilter, Redactor, parse_redaction_filter_lines, redact_string


def _ev(kind: str = "process_exec") -> dict[str, Any]:
    return {
        kind: {
            "process": {"pid": 3, "binary": "/usr/bin/mysql", "arguments": "-u root --password=hunter2 db"},
            "parent": {"pid": 2, "binary": "/bin/bash", "arguments": "-c \"mysql --password=hunter2\""},
            "ancestors": [{"pid": 1, "binary": "/usr/bin/mysql", "arguments": "--password=old"},
                          {"pid": 0, "binary": "/sbin/init", "arguments": ""}],
        },
        "node_name": "n", "time": "t",
    }


def red(text: str) -> Redactor:
    return Redactor(parse_redaction_filter_lines(text))


def test_capture_groups_replaced_in_process_parent_and_ancestors() -> None:
    ev = _ev()
    snapshot = copy.deepcopy(ev)
    out = red('{"redact":["--password=(\\\\S+)"]}').apply(ev)
    body = out["process_exec"]
    assert body["process"]["arguments"] == f"-u root --password={REDACTED} db"
    assert body["parent"]["arguments"] == f'-c "mysql --password={REDACTED}'  # \S+ ate the quote
    assert body["ancestors"][0]["arguments"] == f"--password={REDACTED}"
    assert body["ancestors"][1] is ev["process_exec"]["ancestors"][1]  # untouched: shared
    assert ev == snapshot  # input never mutated
    assert "hunter2" not in repr(out)


def test_binary_regex_is_judged_per_process_record() -> None:
    out = red('{"redact":["password=(\\\\S+)"],"binary_regex":["mysql$"]}').apply(_ev())
    body = out["process_exec"]
    assert "hunter2" not in body["process"]["arguments"]
    assert "hunter2" in body["parent"]["arguments"]  # /bin/bash does not match binary_regex
    assert body["ancestors"][0]["arguments"] == f"--password={REDACTED}"


def test_match_filters_select_events() -> None:
    r = red('{"match":[{"event_set":["PROCESS_KPROBE"]}],"redact":["password=(\\\\S+)"]}')
    ev = _ev()
    assert r.apply(ev) is ev
    assert "hunter2" not in repr(r.apply(_ev("process_kprobe")))


def test_several_groups_nested_groups_and_optional_groups() -> None:
    rx = re.compile(r"(user)=(\S+) (pass(word)?)=(\S+)")
    assert redact_string(rx, "user=bob pass=x user=al password=y") == \
        f"{REDACTED}={REDACTED} {REDACTED}={REDACTED} {REDACTED}={REDACTED} {REDACTED}={REDACTED}"
    assert redact_string(re.compile(r"-p(?: (\S+)|=(\S+))"), "-p a -p=b") == f"-p {REDACTED} -p={REDACTED}"
    assert redact_string(re.compile(r"((a)b)c"), "xabcx") == f"x{REDACTED}cx"


def test_filters_apply_in_order_and_no_change_returns_same_object() -> None:
    r = red('{"redact":["--password=(\\\\S+)"]}\n{"redact":["-u (\\\\S+)"]}')
    out = r.apply(_ev())
    assert out["process_exec"]["process"]["arguments"] == f"-u {REDACTED} --password={REDACTED} db"
    clean = {"process_exec": {"process": {"binary": "/bin/ls", "arguments": "-l"}}, "node_name": "n"}
    assert r.apply(clean) is clean
    info = {"rate_limit_info": {"number_of_dropped_process_events": "2"}}
    assert r.apply(info) is info


def test_environment_variables_are_redacted_too() -> None:
    ev = {"process_exec": {"process": {"binary": "/x", "arguments": "", "environment_variables": [
        {"key": "DB_PASSWORD", "value": "password=s3cret"}, {"key": "HOME", "value": "/root"}]}}}
    out = red('{"redact":["password=(\\\\S+)"]}').apply(ev)
    envs = out["process_exec"]["process"]["environment_variables"]
    assert envs[0]["value"] == f"password={REDACTED}" and envs[1]["value"] == "/root"
    assert ev["process_exec"]["process"]["environment_variables"][0]["value"] == "password=s3cret"


@pytest.mark.parametrize("text,match", [
    ('{"redact":["password=\\\\S+"]}', "no capture group"),
    ('{"redact":["(unclosed"]}', "invalid regex"),
    ('{"binary_regex":["x"]}', "needs 'redact'"),
    ('{"redact":["(x)"],"who":1}', "unknown redaction filter key"),
    ('{"redact":["(x)"],"match":[{"bogus":1}]}', "unknown filter field"),
    ('{"redact":"(x)"', "invalid JSON"),
])
def test_invalid(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        parse_redaction_filter_lines(text)
    assert "\n" not in str(e.value)


def test_construct_directly() -> None:
    f = RedactionFilter(redact=["k=(v)"])
    assert f.redact_text("k=v k=w") == f"k={REDACTED} k=w"
    assert f.applies_to_binary(None) and not RedactionFilter(redact=["(x)"], binary_regex=["a"]).applies_to_binary(None)
