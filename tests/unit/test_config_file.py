"""Unit tests for kerneye.config_file and its use by `kerneye agent`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from kerneye import config_file as cf
from kerneye.cli import main as cli
from kerneye.errors import ConfigError


def agent_parser() -> argparse.ArgumentParser:
    p = cli._parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["agent"]


def resolve(argv: list[str], system_file: Path | None = None, system_dir: Path | None = None) -> argparse.Namespace:
    """What `kerneye agent ARGV` would run with, given these system paths."""
    parser = agent_parser()
    ns = parser.parse_args(argv)
    layers = cf.config_layers(ns.config_file, ns.config_dir,
                              system_file=str(system_file) if system_file else None,
                              system_dir=str(system_dir) if system_dir else None)
    cf.apply_config(parser, ns, argv, layers)
    return ns


def write_dir(d: Path, opts: dict[str, str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for k, v in opts.items():
        (d / k).write_text(v + "\n")
    return d


def test_precedence_defaults_yaml_confd_configfile_configdir_flags(tmp_path: Path) -> None:
    sys_yaml = tmp_path / "etc" / "kerneye.yaml"
    sys_yaml.parent.mkdir()
    sys_yaml.write_text(
        "export-file: /var/log/sys.log\n"
        "export-rate-limit: 100\n"
        "export-file-max-backups: 7\n"
        "export-file-compress: true\n"
        "node-name: from-sys-yaml\n"
        "log-level: debug\n"
    )
    sys_dir = write_dir(tmp_path / "etc" / "kerneye.conf.d", {
        "export-rate-limit": "200", "export-file-max-backups": "8", "node-name": "from-sys-dir"})
    user_yaml = tmp_path / "mine.yaml"
    user_yaml.write_text("export_rate_limit: 300\nnode-name: from-config-file\n")  # underscores work too
    user_dir = write_dir(tmp_path / "mine.d", {"node-name": "from-config-dir"})

    ns = resolve(["--config-file", str(user_yaml), "--config-dir", str(user_dir), "--export-file", "/cli.log"],
                 sys_yaml, sys_dir)
    assert ns.export_file == "/cli.log"            # flag beats everything
    assert ns.node_name == "from-config-dir"       # --config-dir beats --config-file
    assert ns.export_rate_limit == 300             # --config-file beats conf.d
    assert ns.export_file_max_backups == 8         # conf.d beats kerneye.yaml
    assert ns.export_file_compress is True         # only in kerneye.yaml
    assert ns.log_level == "debug"
    assert ns.export_file_max_size_mb == 10.0      # default

    # Without the explicit sources, the system ones apply.
    ns = resolve([], sys_yaml, sys_dir)
    assert (ns.node_name, ns.export_rate_limit, ns.export_file) == ("from-sys-dir", 200, "/var/log/sys.log")
    # Without any source: defaults.
    ns = resolve([], tmp_path / "missing.yaml", tmp_path / "missing.d")
    assert (ns.node_name, ns.export_rate_limit, ns.export_file_compress) == ("", -1, False)


def test_system_defaults_are_the_etc_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert (cf.DEFAULT_CONFIG_FILE, cf.DEFAULT_CONFIG_DIR) == ("/etc/kerneye/kerneye.yaml",
                                                              "/etc/kerneye/kerneye.conf.d")
    y = tmp_path / "sys.yaml"
    y.write_text("node-name: patched\n")
    monkeypatch.setattr(cf, "DEFAULT_CONFIG_FILE", str(y))
    monkeypatch.setattr(cf, "DEFAULT_CONFIG_DIR", str(tmp_path / "none.d"))
    assert cf.config_layers() == [(str(y), {"node-name": "patched"})]


def test_flag_equal_to_default_still_beats_config(tmp_path: Path) -> None:
    y = tmp_path / "k.yaml"
    y.write_text("export-rate-limit: 5\nenable-ancestors: true\n")
    ns = resolve(["--config-file", str(y), "--export-rate-limit", "-1"])
    assert ns.export_rate_limit == -1
    assert ns.enable_ancestors is True


def test_value_types_and_conversions(tmp_path: Path) -> None:
    y = tmp_path / "k.yaml"
    y.write_text(
        "export-file-rotation-interval: 1h30m\n"
        "export-file-perm: 640\n"
        "rb-size: 32M\n"
        "export-file-max-size-mb: 2\n"
        "tracing-policy: [/a.yaml, /b.yaml]\n"
        "policy-mode: enforce\n"
        "export-allowlist:\n"
        "  - {event_set: [PROCESS_EXEC], binary_regex: [curl]}\n"
        "  - {pid: [1]}\n"
        "field-filters: {fields: process.binary, action: INCLUDE}\n"
        "redaction-filters: |\n"
        "  {\"redact\": [\"password=(\\\\S+)\"]}\n"
    )
    ns = resolve(["--config-file", str(y)])
    assert ns.export_file_rotation_interval == 5400.0
    assert ns.export_file_perm == 0o640
    assert ns.rb_size == 32 << 20
    assert ns.export_file_max_size_mb == 2.0
    assert ns.tracing_policy == ["/a.yaml", "/b.yaml"]
    assert ns.policy_mode == "enforce"
    assert [json.loads(x) for x in ns.export_allowlist.splitlines()] == [
        {"event_set": ["PROCESS_EXEC"], "binary_regex": ["curl"]}, {"pid": [1]}]
    assert json.loads(ns.field_filters) == {"fields": "process.binary", "action": "INCLUDE"}
    assert json.loads(ns.redaction_filters) == {"redact": ["password=(\\S+)"]}


def test_config_dir_values(tmp_path: Path) -> None:
    d = write_dir(tmp_path / "d", {
        "export-file-compress": "false", "enable-ancestors": "yes", "export-file-rotation-interval": "30m",
        "tracing-policy": "/x.yaml\n/y.yaml", "export-denylist": '{"pid":[1]}\n{"binary_regex":["sh$"]}',
    })
    (d / ".hidden").write_text("garbage")
    (d / "export-file~").write_text("backup")
    (d / "subdir").mkdir()
    ns = resolve(["--config-dir", str(d)])
    assert ns.export_file_compress is False and ns.enable_ancestors is True
    assert ns.export_file_rotation_interval == 1800.0
    assert ns.tracing_policy == ["/x.yaml", "/y.yaml"]
    assert ns.export_denylist == '{"pid":[1]}\n{"binary_regex":["sh$"]}'


def test_repeatable_flag_on_command_line_replaces_configured_list(tmp_path: Path) -> None:
    y = tmp_path / "k.yaml"
    y.write_text("tracing-policy: [/a.yaml]\n")
    assert resolve(["--config-file", str(y), "--tracing-policy", "/cli.yaml"]).tracing_policy == ["/cli.yaml"]


def test_alias_names_work(tmp_path: Path) -> None:
    y = tmp_path / "k.yaml"
    y.write_text("export-filename: /alias.log\n")
    assert resolve(["--config-file", str(y)]).export_file == "/alias.log"


@pytest.mark.parametrize("content,match", [
    ("bogus-option: 1\n", r"k\.yaml: unknown option 'bogus-option'"),
    ("config-dir: /x\n", "only be given on the command line"),
    ("export-rate-limit: lots\n", r"k\.yaml: option export-rate-limit: invalid value"),
    ("export-file-rotation-interval: soon\n", "invalid value"),
    ("export-file-perm: 999\n", "invalid value"),
    ("policy-mode: sometimes\n", "not one of"),
    ("enable-ancestors: maybe\n", "true or false"),
    ("- a\n- b\n", "expected a mapping"),
    ("a: [\n", r"k\.yaml:\d+:\d+: invalid YAML"),
])
def test_bad_config_file_errors_name_the_file(tmp_path: Path, content: str, match: str) -> None:
    y = tmp_path / "k.yaml"
    y.write_text(content)
    with pytest.raises(ConfigError, match=match) as e:
        resolve(["--config-file", str(y)])
    assert "\n" not in str(e.value)


def test_bad_config_dir_entry_names_its_file(tmp_path: Path) -> None:
    d = write_dir(tmp_path / "d", {"export-rate-limit": "x"})
    with pytest.raises(ConfigError, match=str(d / "export-rate-limit")):
        resolve(["--config-dir", str(d)])
    d2 = write_dir(tmp_path / "d2", {"nope": "1"})
    with pytest.raises(ConfigError, match=r"d2/nope: unknown option 'nope'"):
        resolve(["--config-dir", str(d2)])


def test_explicit_sources_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        resolve(["--config-file", str(tmp_path / "missing.yaml")])
    with pytest.raises(ConfigError, match="not a directory"):
        resolve(["--config-dir", str(tmp_path / "missing.d")])


@pytest.mark.parametrize("text,seconds", [
    ("0", 0.0), ("90", 90.0), ("1.5", 1.5), ("90s", 90.0), ("30m", 1800.0), ("1h", 3600.0),
    ("1h30m", 5400.0), ("500ms", 0.5), ("2d", 172800.0), (45, 45.0),
])
def test_parse_duration(text: Any, seconds: float) -> None:
    assert cf.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "1h 30m", "-5", "m30", True])
def test_parse_duration_invalid(text: Any) -> None:
    with pytest.raises(ValueError):
        cf.parse_duration(text)


def test_parse_perm() -> None:
    assert cf.parse_perm("600") == 0o600 and cf.parse_perm("0640") == 0o640 and cf.parse_perm("0o644") == 0o644
    assert cf.parse_perm(600) == 0o600
    for bad in ("8", "rw-", "7777", "", "0o1000"):
        with pytest.raises(ValueError):
            cf.parse_perm(bad)


def test_text_arg_reads_at_file(tmp_path: Path) -> None:
    f = tmp_path / "allow.jsonl"
    f.write_text('{"pid":[1]}\n')
    assert cf.text_arg(f"@{f}", "export-allowlist") == '{"pid":[1]}\n'
    assert cf.text_arg('{"pid":[1]}', "export-allowlist") == '{"pid":[1]}'
    with pytest.raises(ConfigError, match="--export-allowlist: cannot read"):
        cf.text_arg(f"@{tmp_path / 'nope'}", "export-allowlist")


def test_cli_flags_reach_agent_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kerneye agent ...` maps the new flags (and config-file values) onto AgentConfig."""
    captured: dict[str, Any] = {}

    class FakeAgent:
        def __init__(self, cfg: Any) -> None:
            captured["cfg"] = cfg

        def start(self) -> None:
            pass

        def run(self) -> None:
            pass

        def shutdown(self) -> None:
            pass

        def stop(self) -> None:
            pass

    import kerneye.agent

    monkeypatch.setattr(kerneye.agent, "Agent", FakeAgent)
    monkeypatch.setattr(cli.signal, "signal", lambda *a: None)
    monkeypatch.setattr(cli.logging, "basicConfig", lambda **k: None)
    monkeypatch.setattr(cf, "DEFAULT_CONFIG_FILE", str(tmp_path / "none.yaml"))
    monkeypatch.setattr(cf, "DEFAULT_CONFIG_DIR", str(tmp_path / "none.d"))
    y = tmp_path / "k.yaml"
    y.write_text("export-rate-limit: 120\nexport-file-rotation-interval: 1h\n")
    rc = cli.main(["agent", "--config-file", str(y), "--export-file", "/tmp/x.log", "--export-file-compress",
                   "--export-file-perm", "640", "--export-allowlist", '{"pid":[1]}',
                   "--export-denylist", '{"pid":[2]}', "--field-filters", '{"fields":"process.pid"}',
                   "--redaction-filters", '{"redact":["(x)"]}'])
    assert rc == 0
    cfg = captured["cfg"]
    assert cfg.export_rate_limit == 120 and cfg.export_file_rotation_interval_s == 3600.0
    assert cfg.export_file_compress is True and cfg.export_file_perm == 0o640
    assert cfg.export_allowlist == '{"pid":[1]}' and cfg.export_denylist == '{"pid":[2]}'
    assert cfg.field_filters == '{"fields":"process.pid"}' and cfg.redaction_filters == '{"redact":["(x)"]}'


def test_cli_reports_config_error_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cf, "DEFAULT_CONFIG_FILE", str(tmp_path / "none.yaml"))
    monkeypatch.setattr(cf, "DEFAULT_CONFIG_DIR", str(tmp_path / "none.d"))
    y = tmp_path / "k.yaml"
    y.write_text("no-such-option: 1\n")
    rc = cli.main(["agent", "--config-file", str(y)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "unknown option 'no-such-option'" in err and str(y) in err
