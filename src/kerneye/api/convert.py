"""Fast conversions between export JSON (dicts) and protobuf event messages.

The export line of an event and its gRPC message are the same thing in two
encodings: ``json_format.MessageToDict(msg, preserving_proto_field_name=True)``
equals the exported JSON object (tests/kernel/test_grpc_api.py checks it on
real events). json_format is pure Python and walks every field through
descriptors: ~120 us to parse a policy event, ~220 us for an exec event, too
slow for a stream of 10^5 events/s. These converters do the same work with a
per-message-type plan built once from the descriptors:

* ``to_message(d, cls)``: JSON dict -> message. Only the values whose JSON
  form differs from what the message constructor takes are converted
  (64-bit ints given as strings, Timestamps as RFC 3339, bytes as base64);
  everything else, including nested dicts of plain fields, goes straight to
  the upb constructor in C. Anything unexpected falls back to
  json_format.ParseDict, so errors carry its messages.
* ``to_dict(msg)``: message -> JSON dict, over ``ListFields()`` (set fields
  only, which with explicit presence is exactly what the agent exported).
  Equal to MessageToDict(preserving_proto_field_name=True) for every event
  message; other messages should use json_format.
"""
from __future__ import annotations

import base64
import calendar
import json
import time
from typing import Any, Callable, Mapping, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from ..process.identity import frac_suffix

M = TypeVar("M", bound=Message)
_Conv = Callable[[Any], Any]

_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}
_TIMESTAMP = "google.protobuf.Timestamp"


def _is_repeated(f: FieldDescriptor) -> bool:
    # FieldDescriptor.label is deprecated in newer protobuf releases
    rep = getattr(f, "is_repeated", None)
    return bool(rep) if rep is not None else f.label == FieldDescriptor.LABEL_REPEATED


# --- JSON -> message ------------------------------------------------------------

_day_cache: dict[str, int] = {}


def parse_timestamp(s: str) -> dict[str, int]:
    """'2026-12-03T09:53:53.057919390Z' -> {"seconds": ..., "nanos": ...}.
    Fast path for the UTC 'Z' form the agent writes; others via protobuf."""
    if len(s) >= 20 and s[-1] == "Z" and s[10] == "T" and s[19] in ".Z":
        day = _day_cache.get(s[:10])
        if day is None:
            day = calendar.timegm((int(s[:4]), int(s[5:7]), int(s[8:10]), 0, 0, 0))
            if len(_day_cache) < 4096:
                _day_cache[s[:10]] = day
        secs = day + int(s[11:13]) * 3600 + int(s[14:16]) * 60 + int(s[17:19])
        frac = s[20:-1]
        if not frac:
            return {"seconds": secs, "nanos": 0}
        if len(frac) <= 9 and frac.isdigit():
            return {"seconds": secs, "nanos": int(frac) * 10 ** (9 - len(frac))}
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.FromJsonString(s)
    return {"seconds": ts.seconds, "nanos": ts.nanos}


def _walk(plan: dict[str, _Conv]) -> _Conv:
    get = plan.get

    def conv(d: Any) -> Any:
        return {k: (c(v) if (c := get(k)) is not None else v) for k, v in d.items()}
    return conv


_in_plans: dict[str, dict[str, _Conv] | None] = {}


def _in_plan(desc: Descriptor) -> dict[str, _Conv] | None:
    """Converters for the fields of desc whose JSON value the constructor
    does not take as is; None when there are none (pass the dict through)."""
    name = desc.full_name
    if name in _in_plans:
        return _in_plans[name]
    _in_plans[name] = None  # recursion guard (kerneye events have no cycles)
    plan: dict[str, _Conv] = {}
    for f in desc.fields:
        one: _Conv | None = None
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            mt = f.message_type
            if mt.GetOptions().map_entry:
                continue  # map<string, string>: a dict as is
            if mt.full_name == _TIMESTAMP:
                one = parse_timestamp
            else:
                sub = _in_plan(mt)
                if sub is not None:
                    one = _walk(sub)
        elif f.type in _INT64:
            one = int
        elif f.type == FieldDescriptor.TYPE_BYTES:
            one = base64.b64decode
        if one is None:
            continue
        if _is_repeated(f):
            plan[f.name] = (lambda c: lambda vs: [c(v) for v in vs])(one)
        else:
            plan[f.name] = one
    _in_plans[name] = plan or None
    return plan or None


def to_message(d: Mapping[str, Any], cls: type[M]) -> M:
    """JSON dict (export form) -> message of type cls."""
    plan = _in_plan(cls.DESCRIPTOR)
    try:
        return cls(**(_walk(plan)(d) if plan else d))
    except Exception:  # noqa: BLE001 - json_format says precisely what is wrong
        return json_format.ParseDict(d, cls())


# --- message -> JSON ------------------------------------------------------------

def format_timestamp(seconds: int, nanos: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + frac_suffix(nanos) + "Z"


_sec_cache: dict[int, str] = {}


def _ts_out(ts: Any) -> str:
    s = ts.seconds
    base = _sec_cache.get(s)
    if base is None:
        base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
        if len(_sec_cache) > 8192:
            _sec_cache.clear()
        _sec_cache[s] = base
    return base + frac_suffix(ts.nanos) + "Z"


_out_convs: dict[FieldDescriptor, _Conv | None] = {}


def _field_out(f: FieldDescriptor) -> _Conv | None:
    """How a set value of f renders in JSON; None: as is."""
    if f in _out_convs:
        return _out_convs[f]
    one: _Conv | None = None
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        mt = f.message_type
        if mt.GetOptions().map_entry:
            vf = mt.fields_by_name["value"]
            vconv = None if vf.type != FieldDescriptor.TYPE_MESSAGE else to_dict
            one = (lambda m: dict(m)) if vconv is None else (lambda m: {k: to_dict(v) for k, v in m.items()})
            _out_convs[f] = one
            return one
        one = _ts_out if mt.full_name == _TIMESTAMP else to_dict
    elif f.type in _INT64:
        one = str
    elif f.type == FieldDescriptor.TYPE_BYTES:
        one = lambda b: base64.b64encode(b).decode()  # noqa: E731
    elif f.type == FieldDescriptor.TYPE_ENUM:
        by_num = f.enum_type.values_by_number
        one = lambda v: by_num[v].name if v in by_num else v  # noqa: E731
    elif f.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        one = None  # finite values only in events
    if one is not None and _is_repeated(f):
        one = (lambda c: lambda vs: [c(v) for v in vs])(one)
    elif one is None and _is_repeated(f):
        one = list
    _out_convs[f] = one
    return one


def to_dict(msg: Message) -> dict[str, Any]:
    """Event message -> export JSON dict (= MessageToDict with
    preserving_proto_field_name=True, ~5x faster)."""
    out: dict[str, Any] = {}
    for f, v in msg.ListFields():
        try:
            c = _out_convs[f]
        except KeyError:
            c = _field_out(f)
        out[f.name] = v if c is None else c(v)
    return out


# --- Event -> GetEventsResponse bytes, reusing cached process encodings ------------------

_ONE_BYTE = [bytes((i,)) for i in range(0x80)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_TAGS: dict[int, bytes] = {}


def _len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): tag, length, payload."""
    tag = _TAGS.get(number)
    if tag is None:
        tag = _TAGS[number] = _varint(number << 3 | 2)
    return tag + _varint(len(payload)) + payload


class EventEncoder:
    """Serializes agent Events as GetEventsResponse bytes.

    An event's JSON is built by joining cached fragments: the process and
    parent JSON are the very strings cached on their Process records, shared
    by every event of that process. The encoder recognises them, encodes each
    Process message once (cached by its JSON text) and splices the bytes
    into the event; only the event-specific rest is parsed. Protobuf allows
    the fields of a message in any order on the wire, and a parser merges
    them, so the result decodes to the same message as
    ``to_message(ev.to_dict()).SerializeToString()`` (tested). Events of
    another shape take that slow path.
    """

    def __init__(self, cache_size: int = 16384) -> None:
        from .v1 import events_pb2 as pb

        self.pb = pb
        self.cache_size = cache_size
        self._procs: dict[str, bytes] = {}
        oneof = pb.GetEventsResponse.DESCRIPTOR.oneofs_by_name["event"]
        self._kinds = {f.name: (f.number, getattr(pb, f.message_type.name)) for f in oneof.fields}
        self._nodes: dict[str, bytes] = {}
        self.fast = 0
        self.slow = 0

    def _proc(self, pj: str) -> bytes:
        b = self._procs.get(pj)
        if b is None:
            if len(self._procs) >= self.cache_size:
                self._procs.clear()  # processes come and go; a cold cache is only slower
            b = self._procs[pj] = to_message(json.loads(pj), self.pb.Process).SerializeToString()
        return b

    @staticmethod
    def _match(j: str, pos: int, p: Any) -> str | None:
        # the full record (exec/exit events) or the lean one (policy events);
        # the private caches are read, not built, so nothing new is rendered
        for s in (p._json, p._lean):
            if s is not None and j.startswith(s, pos):
                return s
        return None

    def encode(self, ev: Any) -> bytes:
        j = ev.to_json()
        kind = ev.kind
        spec = self._kinds.get(kind)
        head = '{"' + kind + '":{"process":'
        end = j.rfind('},"node_name":')
        if spec is None or end < 0 or not j.startswith(head):
            return self.encode_slow(ev)
        pos = len(head)
        pj = self._match(j, pos, ev.process)
        if pj is None:
            return self.encode_slow(ev)
        parts = [_len_field(1, self._proc(pj))]
        pos += len(pj)
        if ev.parent is not None and j.startswith(',"parent":', pos):
            qj = self._match(j, pos + 10, ev.parent)
            if qj is None:
                return self.encode_slow(ev)
            parts.append(_len_field(2, self._proc(qj)))
            pos += 10 + len(qj)
        rest = j[pos:end]
        number, cls = spec
        if rest:
            if rest[0] != ",":
                return self.encode_slow(ev)
            parts.append(to_message(json.loads("{" + rest[1:] + "}"), cls).SerializeToString())
        self.fast += 1
        return _len_field(number, b"".join(parts)) + self._envelope("{" + j[end + 2:])

    def _envelope(self, text: str) -> bytes:
        """The usual envelope, '{"node_name":"n","time":"2026-...Z"}', by
        hand: node_name (field 1000; its bytes cached by the text up to the
        time) and time (1001). Anything else through to_message."""
        cut = text.find(',"time":"') + 9
        shaped = cut > 9 and text.startswith('{"node_name":"') and text.endswith('"}')
        node = self._nodes.get(text[:cut]) if shaped else None
        when = text[cut:-2] if node is not None else ""
        if node is None or '"' in when or "\\" in when:
            env = json.loads(text)
            if not (shaped and len(env) == 2 and isinstance(env.get("node_name"), str)
                    and isinstance(env.get("time"), str)):
                return to_message(env, self.pb.GetEventsResponse).SerializeToString()
            node = _len_field(1000, env["node_name"].encode())
            if len(self._nodes) < 64:
                self._nodes[text[:cut]] = node
            when = env["time"]
        ts = parse_timestamp(when)
        secs, nanos = ts["seconds"], ts["nanos"]
        if secs < 0:
            return to_message(json.loads(text), self.pb.GetEventsResponse).SerializeToString()
        t = (b"\x08" + _varint(secs) if secs else b"") + (b"\x10" + _varint(nanos) if nanos else b"")
        return node + _len_field(1001, t)

    def encode_slow(self, ev: Any, d: Any = None) -> bytes:
        self.slow += 1
        if d is None:
            d = ev._dict if ev._dict is not None else json.loads(ev.to_json())
        return to_message(d, self.pb.GetEventsResponse).SerializeToString()
