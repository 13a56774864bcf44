"""Agent options from a YAML config file and a config directory.

Every option is named after the agent's long flag, without the dashes in
front: ``export-file``, ``export-file-max-size-mb``, ``export-allowlist``,
``export-rate-limit``, ``tracing-policy-dir``, ``enable-ancestors``, ...
(``kerneye agent --help`` lists them; an alias such as ``export-filename``
works too, and so do underscores instead of dashes in YAML keys).

Sources, lowest precedence first (a later source overrides an earlier one
option by option):

1. built-in defaults (the flags' defaults)
2. ``/etc/kerneye/kerneye.yaml`` (if present)
3. ``/etc/kerneye/kerneye.conf.d/*`` (if present)
4. ``--config-file FILE``
5. ``--config-dir DIR``
6. flags on the command line

The YAML file is a mapping ``option: value``. Values take the YAML type
(``export-rate-limit: 600``, ``enable-ancestors: true``); filter options
(``export-allowlist``, ``field-filters``, ...) take the JSON-lines string, a
single mapping or a list of mappings (each becomes one line). Repeatable
flags (``tracing-policy``) take a list.

A config directory holds one file per option: the file name is the option
name and the content is the value (surrounding whitespace stripped;
``true``/``false`` for switches; one value per line for repeatable flags).
Hidden files (``.*``) and editor backups (``*~``) are skipped; so are
sub-directories.

An unknown option, a malformed file or a bad value raises
:class:`~kerneye.errors.ConfigError` naming the file. A repeatable flag given
on the command line replaces (does not extend) the configured list.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_CONFIG_DIR",
    "load_config_file",
    "load_config_dir",
    "config_layers",
    "apply_config",
    "parse_duration",
    "parse_perm",
    "text_arg",
]

DEFAULT_CONFIG_FILE = "/etc/kerneye/kerneye.yaml"
DEFAULT_CONFIG_DIR = "/etc/kerneye/kerneye.conf.d"

_UNSET: Any = object()

# Options that choose where configuration comes from; not settable from it.
_META = frozenset({"config-file", "config-dir", "help"})

_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | int | float) -> float:
    """``"1h"``, ``"30m"``, ``"1h30m"``, ``"45s"``, ``"500ms"``, ``"90"`` (seconds) -> seconds.

    Go-style unit sequences as Tetragon's duration flags take them; a bare
    number is seconds. Raises ValueError (argparse turns it into a usage error).
    """
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"duration must not be negative: {text!r}")
        return float(text)
    s = str(text).strip().lower()
    try:
        v = float(s)
    except ValueError:
        pos = 0
        total = 0.0
        for m in _DURATION_RE.finditer(s):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNIT_S[m.group(2)]
            pos = m.end()
        if pos != len(s) or not s:
            raise ValueError(f"not a duration: {text!r} (examples: 1h, 30m, 1h30m, 90s, 90)") from None
        return total
    if v < 0:
        raise ValueError(f"duration must not be negative: {text!r}")
    return v


def parse_perm(text: str | int) -> int:
    """File mode in octal: ``"600"``, ``"0640"``, ``"0o600"`` -> int.

    A YAML integer ``600`` is read as the octal digits it shows.
    """
    s = str(text).strip().lower()
    if isinstance(text, bool):
        s = ""
    s = s.removeprefix("0o")
    if not re.fullmatch(r"[0-7]{1,4}", s):
        raise ValueError(f"not an octal file mode: {text!r} (examples: 600, 0640)")
    v = int(s, 8)
    if v > 0o777:
        raise ValueError(f"file mode {text!r} has bits beyond 0777 (no setuid/setgid/sticky)")
    return v


def text_arg(value: str, option: str) -> str:
    """A flag value that is text or ``@FILE`` (read the text from FILE)."""
    if not value or not value.startswith("@"):
        return value
    path = value[1:]
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"--{option}: cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--{option}: {path} is not UTF-8 text") from None


def _norm(name: Any) -> str:
    return str(name).strip().replace("_", "-").lower()


def load_config_file(path: str) -> dict[str, Any]:
    """Read a YAML config file -> {option: value}. ConfigError names the file."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file {path}{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {path}: expected a mapping of option: value, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for k, v in data.items():
        if v is None:
            continue  # "option:" with no value = not set
        out[_norm(k)] = v
    return out


def load_config_dir(path: str) -> dict[str, str]:
    """Read a config directory (one file per option) -> {option: text}."""
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        raise ConfigError(f"cannot read config directory {path}: {e.strerror or e}") from None
    out: dict[str, str] = {}
    for name in names:
        if name.startswith(".") or name.endswith("~"):
            continue
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            continue
        try:
            with open(full, encoding="utf-8") as f:
                out[_norm(name)] = f.read().strip()
        except OSError as e:
            raise ConfigError(f"cannot read config file {full}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {full} is not UTF-8 text") from None
    return out


def config_layers(
    config_file: str | None = None,
    config_dir: str | None = None,
    system_file: str | None | object = _UNSET,
    system_dir: str | None | object = _UNSET,
) -> list[tuple[str, dict[str, Any]]]:
    """The configured sources, lowest precedence first: [(source, options)].

    ``system_file``/``system_dir`` default to :data:`DEFAULT_CONFIG_FILE` /
    :data:`DEFAULT_CONFIG_DIR` (``None`` = none) and are read only if they
    exist; an explicit ``config_file``/``config_dir`` must exist. For a
    directory, the source of each option is its own file, so errors name
    that file.
    """
    if system_file is _UNSET:
        system_file = DEFAULT_CONFIG_FILE
    if system_dir is _UNSET:
        system_dir = DEFAULT_CONFIG_DIR
    assert system_file is None or isinstance(system_file, str)
    assert system_dir is None or isinstance(system_dir, str)
    layers: list[tuple[str, dict[str, Any]]] = []

    def add_dir(d: str) -> None:
        for opt, val in load_config_dir(d).items():
            layers.append((os.path.join(d, opt), {opt: val}))

    if system_file and os.path.isfile(system_file):
        layers.append((system_file, load_config_file(system_file)))
    if system_dir and os.path.isdir(system_dir):
        add_dir(system_dir)
    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"--config-file {config_file}: no such file")
        layers.append((config_file, load_config_file(config_file)))
    if config_dir:
        if not os.path.isdir(config_dir):
            raise ConfigError(f"--config-dir {config_dir}: not a directory")
        add_dir(config_dir)
    return layers


# --- mapping options onto an argparse parser -------------------------------

_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n", ""}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    out = {}
    for a in parser._actions:  # noqa: SLF001 - argparse has no public accessor
        for s in a.option_strings:
            if s.startswith("--"):
                out[s[2:]] = a
    return out


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return json.dumps(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, Mapping) for v in value):
        return "\n".join(json.dumps(v) for v in value)  # JSON lines (filter options)
    if isinstance(value, (list, tuple)):
        raise ValueError(f"expected a single value, got a list {value!r}")
    return str(value)


def _scalar(action: argparse.Action, value: Any) -> Any:
    t = action.type
    if t is None:
        out: Any = _as_text(value)
    elif isinstance(value, str):
        out = t(value)  # type: ignore[misc, operator]
    elif t in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        if t is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        out = t(value)
    else:
        out = t(_as_text(value))  # type: ignore[misc, operator]
    if action.choices is not None and out not in action.choices:
        raise ValueError(f"{out!r} is not one of {', '.join(map(str, action.choices))}")
    return out


def _convert(action: argparse.Action, value: Any) -> Any:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # noqa: SLF001
        b = _to_bool(value)
        return b if isinstance(action, argparse._StoreTrueAction) else not b  # noqa: SLF001
    if isinstance(action, argparse.BooleanOptionalAction):
        return _to_bool(value)
    if isinstance(action, argparse._StoreConstAction):  # noqa: SLF001
        return action.const if _to_bool(value) else action.default
    if isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*") or isinstance(action.nargs, int):  # noqa: SLF001
        if isinstance(value, str):
            items: list[Any] = [ln.strip() for ln in value.splitlines() if ln.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        return [_scalar(action, v) for v in items]
    return _scalar(action, value)


def explicit_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The ``dest`` of every option actually given in ``argv``."""
    saved = [(a, a.default) for a in parser._actions]  # noqa: SLF001
    try:
        for a, _ in saved:
            a.default = argparse.SUPPRESS
        ns, _rest = parser.parse_known_args(list(argv))
    finally:
        for a, d in saved:
            a.default = d
    return set(vars(ns))


def apply_config(
    parser: argparse.ArgumentParser,
    ns: argparse.Namespace,
    argv: Sequence[str],
    layers: list[tuple[str, dict[str, Any]]],
) -> dict[str, str]:
    """Set on ``ns`` every option from ``layers`` that ``argv`` does not give.

    ``parser`` is the (sub)parser that parsed ``argv`` into ``ns``. Returns
    {dest: source} for the options taken from configuration. Raises
    ConfigError naming the source for an unknown option or a bad value.
    """
    options = _options(parser)
    explicit = explicit_dests(parser, argv)
    chosen: dict[str, tuple[str, argparse.Action, Any]] = {}
    for source, opts in layers:
        for name, value in opts.items():
            action = options.get(name)
            if action is None or name in _META:
                hint = " (it can only be given on the command line)" if name in _META else (
                    "; options are the agent's long flag names, e.g. export-file, export-rate-limit")
                raise ConfigError(f"{source}: unknown option {name!r}{hint}")
            try:
                converted = _convert(action, value)
            except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
                raise ConfigError(f"{source}: option {name}: invalid value {value!r}: {e}") from None
            chosen[action.dest] = (source, action, converted)
    used: dict[str, str] = {}
    for dest, (source, _action, converted) in chosen.items():
        if dest in explicit:
            continue
        setattr(ns, dest, converted)
        used[dest] = source
    return used
