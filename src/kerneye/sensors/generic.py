"""The generic sensor: one BPF object serving every TracingPolicy.

generic.bpf.o is loaded once (at agent start) and shares the base sensor's
ring buffer, process map and matchBinaries maps. A policy is then pure
data: `PolicyManager.add()` compiles it, writes hook configurations,
selectors and value maps, and attaches the generic programs with each hook's
id as the BPF cookie. Everything is all-or-nothing: a policy that fails at
any step leaves no hook, map entry or link behind, and other policies'
events are never interrupted (their hooks are untouched).
"""
from __future__ import annotations

import base64
import ctypes
import json
import json.encoder as json_encoder
import struct
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from ..abi.types import (GEN_HOOKS_PER_SLOT, GEN_MAX_SELECTORS, GenSlot, GenAddrKey, GenConfig, GenFilter, GenHook, GenHookFlag, GenHookKind,
                         GenHookStats, GenIntKey, GenMsgFlag, GenSelector, GenStrKey, MsgGeneric, MsgOp, GenArgType,
                         ExecveMapValue, GenFilterKind)
from ..bpf import libbpf, maps
from ..bpf.objects import LoadedObject, ObjectSpec
from ..errors import KerneyeError
from ..events.event import Event
from ..policy.compile import HK_KPROBE, CompiledPolicy, Compiler, HookC, SelectorC
from ..policy.errors import PolicyError
from ..policy.model import TracingPolicy
from ..process.caps import CAP_NAMES
from ..process.identity import exec_id, frac_suffix, rfc3339
from ..process.model import Process, unknown_process
from .base import Sensor

log = logging.getLogger("kerneye.policy")

NAME = "generic"
_MSG_SIZE = ctypes.sizeof(MsgGeneric)
BIN_SLOTS = 64
MAX_HOOKS = 4096

BPF_CMDS = ["BPF_MAP_CREATE", "BPF_MAP_LOOKUP_ELEM", "BPF_MAP_UPDATE_ELEM", "BPF_MAP_DELETE_ELEM",
            "BPF_MAP_GET_NEXT_KEY", "BPF_PROG_LOAD", "BPF_OBJ_PIN", "BPF_OBJ_GET", "BPF_PROG_ATTACH",
            "BPF_PROG_DETACH", "BPF_PROG_TEST_RUN", "BPF_PROG_GET_NEXT_ID", "BPF_MAP_GET_NEXT_ID",
            "BPF_PROG_GET_FD_BY_ID", "BPF_MAP_GET_FD_BY_ID", "BPF_OBJ_GET_INFO_BY_FD", "BPF_PROG_QUERY",
            "BPF_RAW_TRACEPOINT_OPEN", "BPF_BTF_LOAD", "BPF_BTF_GET_FD_BY_ID", "BPF_TASK_FD_QUERY",
            "BPF_MAP_LOOKUP_AND_DELETE_ELEM", "BPF_MAP_FREEZE", "BPF_BTF_GET_NEXT_ID", "BPF_MAP_LOOKUP_BATCH",
            "BPF_MAP_LOOKUP_AND_DELETE_BATCH", "BPF_MAP_UPDATE_BATCH", "BPF_MAP_DELETE_BATCH", "BPF_LINK_CREATE",
            "BPF_LINK_UPDATE", "BPF_LINK_GET_FD_BY_ID", "BPF_LINK_GET_NEXT_ID", "BPF_ENABLE_STATS",
            "BPF_ITER_CREATE", "BPF_LINK_DETACH", "BPF_PROG_BIND_MAP", "BPF_TOKEN_CREATE"]
FAMILIES = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET", 0: "AF_UNSPEC"}
SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 5: "SOCK_SEQPACKET"}
PROTOS = {0: "IPPROTO_IP", 1: "IPPROTO_ICMP", 6: "IPPROTO_TCP", 17: "IPPROTO_UDP", 58: "IPPROTO_ICMPV6",
          255: "IPPROTO_RAW", 132: "IPPROTO_SCTP"}
TCP_STATES = {1: "TCP_ESTABLISHED", 2: "TCP_SYN_SENT", 3: "TCP_SYN_RECV", 4: "TCP_FIN_WAIT1", 5: "TCP_FIN_WAIT2",
              6: "TCP_TIME_WAIT", 7: "TCP_CLOSE", 8: "TCP_CLOSE_WAIT", 9: "TCP_LAST_ACK", 10: "TCP_LISTEN",
              11: "TCP_CLOSING", 12: "TCP_NEW_SYN_RECV"}


def _ip(addr16: bytes, family: int) -> str:
    if family == 2 or addr16[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, addr16[12:16])
    return socket.inet_ntop(socket.AF_INET6, addr16)


def _header_struct() -> struct.Struct:
    """struct.Struct over msg_generic built from the generated ctypes mirror
    (one unpack_from per event instead of a ctypes copy), checked for size."""
    codes = {ctypes.c_uint8: "B", ctypes.c_uint16: "H", ctypes.c_uint32: "I", ctypes.c_uint64: "Q",
             ctypes.c_int64: "q", ctypes.c_int32: "i"}
    fmt = "<"

    def walk(cls: Any) -> None:
        nonlocal fmt
        for name, ct in cls._fields_:
            if isinstance(ct, type) and issubclass(ct, ctypes.Structure):
                walk(ct)
            elif hasattr(ct, "_length_"):
                fmt += f"{ct._length_}{codes[ct._type_]}"
            else:
                fmt += codes[ct]

    walk(MsgGeneric)
    st = struct.Struct(fmt)
    assert st.size == ctypes.sizeof(MsgGeneric), "msg_generic mirror and struct format disagree"
    return st


_HDR = _header_struct()
_enc = json_encoder.encode_basestring  # C-accelerated JSON string quoting


@dataclass
class HookRuntime:
    hook_id: int
    policy: str
    compiled: HookC
    header_fragment: dict[str, Any]
    decoders: list[Callable[[bytes, bool], dict[str, Any]]]
    fast: list[tuple[int, Callable[[bytes, bool], str]]] = field(default_factory=list)
    head_json: str = ""   # ',"function_name":"…","args":['
    tail_json: str = ""   # ',"policy_name":"…","message":…,"tags":[…]'
    ret_key: str = ""


@dataclass
class PolicyState:
    name: str
    mode: str
    source: str
    state: str = "enabled"   # enabled | disabled | error
    error: str = ""
    hook_ids: list[int] = field(default_factory=list)
    attachments: list[tuple[tuple[Any, ...], int]] = field(default_factory=list)  # (slot key, hook id)
    filter_ids: list[int] = field(default_factory=list)
    map_keys: list[tuple[int, Any]] = field(default_factory=list)  # (map fd, key) to delete on removal
    bin_slots: list[tuple[str, tuple[str, ...], bool]] = field(default_factory=list)
    compiled: CompiledPolicy | None = None

    def summary(self, stats: dict[str, int]) -> dict[str, Any]:
        hooks = []
        if self.compiled:
            for h in self.compiled.hooks:
                if h.kind == HK_KPROBE:
                    hooks.append(f"kprobe:{h.attach[0]}")
                    continue
                hooks.append("/".join(h.attach[:2]) if h.kind != GenHookKind.UPROBE else f"uprobe:{h.attach[0]}:{h.attach[1]}")
        return {"name": self.name, "state": self.state, "mode": self.mode, "hooks": hooks, "error": self.error,
                "source": self.source, **stats}


class PolicyManager:
    """Adds, removes, enables and decodes TracingPolicies. Thread-safe: the
    API thread changes policies while the main thread decodes events."""

    def __init__(self, bpf_dir: str, shared_fds: dict[str, int], compiler: Compiler, node: str, clock: Any,
                 cache: Any, eventcache: Any, emit: Callable[[Event], None], ancestors: bool = False,
                 wakeup_bytes: int = 256 << 10, full_process: bool = False) -> None:
        self.wakeup_bytes = wakeup_bytes
        self.full_process = full_process
        # chosen once, not per event: the process record policy events carry
        self._process_json = Process.json if full_process else Process.json_lean
        self.bpf_dir = bpf_dir
        self.shared_fds = shared_fds
        self.compiler = compiler
        self.node = node
        self.clock = clock
        self.cache = cache
        self.eventcache = eventcache
        self.emit = emit
        self.ancestors = ancestors
        self.obj: LoadedObject | None = None
        self.policies: dict[str, PolicyState] = {}
        self.hooks: dict[int, HookRuntime] = {}
        self._free_hooks = list(range(MAX_HOOKS - 1, -1, -1))
        self._next_filter = 1
        self._free_slots = list(range(BIN_SLOTS - 1, -1, -1))
        self._bin_exact: dict[bytes, int] = {}
        self._bin_prefix: dict[bytes, int] = {}
        self._bin_postfix: dict[bytes, int] = {}
        self._follow_mask = 0
        self._slot_of: dict[tuple[str, tuple[str, ...], bool], tuple[int, int]] = {}  # key -> (slot, refs)
        self._bin_owners: dict[str, PolicyState] = {}  # acquire_binaries() owners
        # attachment slots: one link per tracepoint / uprobe location, shared
        # by every hook on it (cookie = slot id)
        self._att: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._free_att = list(range(MAX_HOOKS - 1, -1, -1))
        self._generation = 0
        self._closing: list[Any] | None = None
        self._closers: list[threading.Thread] = []
        self._lock = threading.RLock()
        self.unknown_hook = 0
        self._node_json = json.dumps(node)
        self._ts_sec = -1
        self._ts_prefix = ""
        self.ncpu = libbpf.lib().libbpf_num_possible_cpus()

    # --- sensor ---------------------------------------------------------------
    def sensor(self) -> Sensor:
        # a kernel that rejects bpf_get_attach_cookie in raw_tp (< 6.10) would fail the whole object
        rawtp = not getattr(self.compiler, "features", {}).get("rawtp")
        # kprobe programs only where the kprobe probe passed: a kernel
        # without them must still load the rest of the object
        feats = getattr(self.compiler, "features", {})
        kprobe = "kprobe" in feats and feats["kprobe"] is None
        spec = ObjectSpec(os.path.join(self.bpf_dir, "generic.bpf.o"),
                          autoload={"kerneye_gen_rawtp": rawtp, "kerneye_gen_kprobe": kprobe,
                                    "kerneye_gen_kretprobe": kprobe},
                          max_entries={"kerneye_gen_heap": self.ncpu},
                          rodata={"cfg_self_tgid": os.getpid(), "cfg_wakeup_bytes": self.wakeup_bytes})

        def post_load(s: Sensor) -> None:
            self.obj = s.loaded[0]

        def pre_unload(s: Sensor) -> None:
            for name in list(self.policies):
                self.delete(name)
            self.wait_detached()
            self.obj = None

        return Sensor(NAME, [spec], handlers={MsgOp.GENERIC: self.handle}, post_load=post_load,
                      pre_unload=pre_unload)

    def _fd(self, name: str) -> int:
        assert self.obj is not None
        return self.obj.map_fd(name)

    # --- add / delete -----------------------------------------------------------
    def add(self, tp: TracingPolicy, mode: str | None = None) -> PolicyState:
        with self._lock:
            if self.obj is None:
                raise KerneyeError("the generic sensor is not loaded; policies cannot be added")
            if tp.name in self.policies:
                from ..policy.compile import key_line

                line, col = key_line(tp.source_file, "name", after="metadata")
                raise PolicyError("duplicate-name", f"a policy named {tp.name} is already loaded; delete it first",
                                  path="metadata.name", file=tp.source_file or "<api>", line=line, col=col)
            compiled = self.compiler.compile(tp, mode)
            st = PolicyState(tp.name, compiled.mode, tp.source_file or "<api>", compiled=compiled)
            try:
                for hc in compiled.hooks:
                    self._install_hook(st, hc)
            except BaseException as e:
                self._teardown(st)
                if isinstance(e, KerneyeError):
                    raise KerneyeError(f"policy {tp.name}: {e}") from None
                raise
            self.policies[tp.name] = st
            log.info("policy %s loaded (%s mode): %d hooks", tp.name, st.mode, len(st.hook_ids))
            return st

    def delete(self, name: str) -> None:
        with self._lock:
            st = self.policies.pop(name, None)
            if st is None:
                raise KerneyeError(f"no policy named {name}; `kerneye tracingpolicy list` shows the loaded ones")
            self._teardown(st)
            log.info("policy %s removed", name)

    def set_enabled(self, name: str, on: bool) -> None:
        with self._lock:
            st = self._get(name)
            for hid in st.hook_ids:
                self._update_hook_flags(hid, GenHookFlag.ENABLED, on)
            st.state = "enabled" if on else "disabled"

    def set_mode(self, name: str, mode: str) -> None:
        if mode not in ("monitor", "enforce"):
            raise KerneyeError(f"mode must be monitor or enforce, not {mode!r}")
        with self._lock:
            st = self._get(name)
            for hid in st.hook_ids:
                self._update_hook_flags(hid, GenHookFlag.ENFORCE, mode == "enforce")
            st.mode = mode

    def _get(self, name: str) -> PolicyState:
        st = self.policies.get(name)
        if st is None:
            raise KerneyeError(f"no policy named {name}; `kerneye tracingpolicy list` shows the loaded ones")
        return st

    def _update_hook_flags(self, hid: int, flag: int, on: bool) -> None:
        fd = self._fd("kerneye_hooks")
        h = GenHook()
        maps.lookup(fd, ctypes.c_uint32(hid), h)
        h.flags = (h.flags | flag) if on else (h.flags & ~flag)
        maps.update(fd, ctypes.c_uint32(hid), h)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [st.summary(self._stats(st)) for st in self.policies.values()]

    def _stats(self, st: PolicyState) -> dict[str, int]:
        out = {"npost": 0, "nenforce": 0, "nmonitor": 0, "nratelimited": 0, "nlost": 0}
        if self.obj is None:
            return out
        fd = self._fd("kerneye_hook_stats")
        vals = (GenHookStats * self.ncpu)()
        for hid in st.hook_ids:
            if maps.lookup(fd, ctypes.c_uint32(hid), vals):
                for v in vals:
                    out["npost"] += v.posted
                    out["nenforce"] += v.enforced
                    out["nmonitor"] += v.monitored
                    out["nratelimited"] += v.rate_limited
                    out["nlost"] += v.lost
        return out

    # --- installing ---------------------------------------------------------------
    def _install_hook(self, st: PolicyState, hc: HookC) -> None:
        if not self._free_hooks:
            raise KerneyeError(f"all {MAX_HOOKS} hook slots are in use; delete policies first")
        hid = self._free_hooks.pop()
        st.hook_ids.append(hid)
        self._generation = (self._generation + 1) & 0x0FFFFFFF
        if hc.kind == GenHookKind.UPROBE:
            path, sym, off = hc.attach
            entry_key: tuple[Any, ...] = ("kerneye_gen_uprobe", path, sym, int(off), False)
            exit_key: tuple[Any, ...] | None = ("kerneye_gen_uretprobe", path, sym, int(off), True) if hc.is_return else None
        elif hc.kind == GenHookKind.RAWTP:
            entry_key = ("kerneye_gen_rawtp", hc.attach[0], hc.attach[1])
            exit_key = None
        elif hc.kind == HK_KPROBE:
            entry_key = ("kerneye_gen_kprobe", hc.attach[0])
            exit_key = ("kerneye_gen_kretprobe", hc.attach[0]) if hc.is_return else None
        else:
            prog = "kerneye_gen_sys_enter" if hc.kind == GenHookKind.SYSCALL else "kerneye_gen_tp"
            entry_key = (prog, hc.attach[0], hc.attach[1])
            exit_key = ("kerneye_gen_sys_exit", hc.exit_attach[0], hc.exit_attach[1]) if hc.exit_attach else None
        h = GenHook()
        h.policy_id = self._generation
        h.flags = GenHookFlag.ENABLED | (GenHookFlag.RETURN if hc.is_return else 0) | (
            GenHookFlag.ENFORCE if st.mode == "enforce" else 0)
        h.kind = hc.kind
        h.nargs = len(hc.args)
        h.nsel = len(hc.selectors)
        h.slot = self._slot_id(entry_key)
        h.exit_slot = self._slot_id(exit_key) if exit_key else 0xFFFF
        for i, (_spec, _info, g) in enumerate(hc.args):
            a = h.args[i]
            for k, v in g.items():
                setattr(a, k, v)
        # Order matters for events in flight: counters, selectors and value
        # maps, then the hook config, then the attachment slot (which makes
        # the hook live).
        maps.update(self._fd("kerneye_hook_stats"), ctypes.c_uint32(hid), (GenHookStats * self.ncpu)())
        sfd = self._fd("kerneye_selectors")
        for si, sc in enumerate(hc.selectors):
            maps.update(sfd, ctypes.c_uint32(hid * GEN_MAX_SELECTORS + si), self._selector(st, sc))
        self.hooks[hid] = self._runtime(hid, st.name, hc)
        maps.update(self._fd("kerneye_hooks"), ctypes.c_uint32(hid), h)
        if exit_key:
            self._slot_add(st, exit_key, hid)
        self._slot_add(st, entry_key, hid)

    def _slot_id(self, key: tuple[Any, ...]) -> int:
        a = self._att.get(key)
        if a is None:
            if not self._free_att:
                raise KerneyeError(f"all {MAX_HOOKS} attachment slots are in use")
            a = {"sid": self._free_att.pop(), "link": None, "hooks": []}
            self._att[key] = a
        return int(a["sid"])

    def _write_slot(self, a: dict[str, Any]) -> None:
        v = GenSlot()
        v.n = len(a["hooks"])
        for i, hid in enumerate(a["hooks"]):
            v.hooks[i] = hid
        maps.update(self._fd("kerneye_slots"), ctypes.c_uint32(a["sid"]), v)

    def _slot_add(self, st: PolicyState, key: tuple[Any, ...], hid: int) -> None:
        a = self._att[key]
        if len(a["hooks"]) >= GEN_HOOKS_PER_SLOT:
            raise KerneyeError(f"{'/'.join(map(str, key[1:3]))} already carries {GEN_HOOKS_PER_SLOT} hooks")
        a["hooks"].append(hid)
        self._write_slot(a)
        st.attachments.append((key, hid))
        if a["link"] is None:
            assert self.obj is not None
            try:
                if key[0] == "kerneye_gen_rawtp":
                    a["link"] = self.obj.attach_raw_tracepoint(key[0], key[2], a["sid"])
                elif key[0] in ("kerneye_gen_kprobe", "kerneye_gen_kretprobe"):
                    a["link"] = self.obj.attach_kprobe(key[0], key[1], a["sid"],
                                                       retprobe=key[0] == "kerneye_gen_kretprobe")
                elif key[0].startswith("kerneye_gen_u"):
                    _prog, path, sym, off, ret = key
                    a["link"] = self.obj.attach_uprobe(key[0], path, sym or None, off, a["sid"], retprobe=ret)
                else:
                    a["link"] = self.obj.attach_tracepoint(key[0], key[1], key[2], a["sid"])
            except BaseException:
                a["hooks"].remove(hid)
                st.attachments.remove((key, hid))
                self._release_slot(key)
                raise

    def _slot_remove(self, key: tuple[Any, ...], hid: int) -> None:
        a = self._att.get(key)
        if a is None:
            return
        if hid in a["hooks"]:
            a["hooks"].remove(hid)
        if a["hooks"]:
            self._write_slot(a)
        else:
            self._release_slot(key)

    def _release_slot(self, key: tuple[Any, ...]) -> None:
        a = self._att[key]
        if a["hooks"]:
            return
        if self.obj is not None:
            maps.update(self._fd("kerneye_slots"), ctypes.c_uint32(a["sid"]), GenSlot())
        del self._att[key]
        if a["link"] is not None and self._closing is not None:
            self._closing.append((a["link"], a["sid"]))  # the slot id is reused once detached
            return
        if a["link"] is not None:
            a["link"].close()
        self._free_att.append(a["sid"])

    def _close_links(self, links: list[tuple[Any, int]]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(32, len(links))) as ex:
            list(ex.map(lambda ls: ls[0].close(), links))
        with self._lock:
            self._free_att.extend(sid for _lk, sid in links)

    def wait_detached(self) -> None:
        """Block until background detaches are done (agent shutdown)."""
        for th in self._closers:
            th.join()
        self._closers.clear()

    def _selector(self, st: PolicyState, sc: SelectorC) -> GenSelector:
        s = GenSelector()
        s.nfilters = len(sc.filters)
        s.actions = sc.actions
        s.signal = sc.signal
        s.rate_limit_ms = sc.rate_limit_ms
        s.rate_scope = sc.rate_scope
        s.has_ret = int(sc.has_ret)
        for i, fc in enumerate(sc.filters):
            f: GenFilter = s.f[i]
            fid = self._next_filter
            self._next_filter += 1
            st.filter_ids.append(fid)
            f.kind, f.op, f.arg, f.flags, f.id = fc.kind, fc.op, fc.arg, fc.flags, fid
            vals = list(fc.vals)
            if fc.kind == GenFilterKind.BIN and fc.bin_values:
                vals = [self._bin_slot(st, *fc.bin_values)]
            f.nvals = len(vals)
            for j, v in enumerate(vals):
                f.vals[j] = v & 0xFFFFFFFFFFFFFFFF
            for kind, b in fc.strs:
                k = GenStrKey()
                k.id = fid
                k.s = b
                if kind == "eq":
                    fd = self._fd("kerneye_str_eq")
                else:
                    k.prefixlen = 32 + 8 * len(b)
                    fd = self._fd("kerneye_str_prefix" if kind == "prefix" else "kerneye_str_postfix")
                maps.update(fd, k, ctypes.c_uint8(1))
                st.map_keys.append((fd, k))
            for addr, bits in fc.addrs:
                k2 = GenAddrKey()
                k2.prefixlen = 32 + bits
                k2.id = fid
                ctypes.memmove(k2.addr, addr, 16)
                fd = self._fd("kerneye_addr")
                maps.update(fd, k2, ctypes.c_uint8(1))
                st.map_keys.append((fd, k2))
            for v in fc.ints:
                k3 = GenIntKey(id=fid, val=v & 0xFFFFFFFFFFFFFFFF)
                fd = self._fd("kerneye_int_set")
                maps.update(fd, k3, ctypes.c_uint8(1))
                st.map_keys.append((fd, k3))
        return s

    # --- binary sets for other sensors (enforcement rules "for these binaries") ---
    def acquire_binaries(self, owner: str, paths: list[str]) -> int:
        """The execve-map bit of a set of executables (exact paths, children
        not followed): kerneye_execve_map[tgid].bin_match & bit != 0 for the
        processes running one of them. Released with release_binaries(owner)."""
        with self._lock:
            st = self._bin_owners.setdefault(owner, PolicyState(owner, "", "<enforcement>"))
            return 1 << self._bin_slot(st, "eq", list(paths), False)

    def release_binaries(self, owner: str) -> None:
        with self._lock:
            st = self._bin_owners.pop(owner, None)
            if st is not None:
                self._release_bins(st)

    # --- matchBinaries ------------------------------------------------------------
    def _bin_slot(self, st: PolicyState, kind: str, paths: list[str], follow: bool) -> int:
        """One slot per distinct (operator, values, followChildren): a policy
        hooking 300 syscalls with the same matchBinaries uses one slot."""
        key = (kind, tuple(sorted(paths)), follow)
        if key in self._slot_of:
            slot, refs = self._slot_of[key]
            self._slot_of[key] = (slot, refs + 1)
            st.bin_slots.append(key)
            return slot
        if not self._free_slots:
            raise KerneyeError(f"all {BIN_SLOTS} distinct matchBinaries filters are in use; delete policies first")
        slot = self._free_slots.pop()
        self._slot_of[key] = (slot, 1)
        st.bin_slots.append(key)
        bit = 1 << slot
        table = {"eq": self._bin_exact, "prefix": self._bin_prefix, "postfix": self._bin_postfix}[kind]
        for p in paths:
            key = p.encode() if kind != "postfix" else p.encode()[::-1]
            table[key] = table.get(key, 0) | bit
        if follow:
            self._follow_mask |= bit
        self._sync_bins()
        self._backfill(slot, kind, paths)
        return slot

    def _sync_bins(self) -> None:
        """Bring the binary maps in line with the Python tables. LPM maps
        return the longest match only, so each entry carries the bits of its
        prefixes. New and changed entries are written before stale ones are
        removed, so other policies' matching never sees a gap."""
        def rewrite(fd: int, table: dict[bytes, int], lpm: bool) -> None:
            want: dict[bytes, int] = {}
            for key, bits in table.items():
                if lpm:
                    bits = 0
                    for other, obits in table.items():
                        if key.startswith(other):
                            bits |= obits
                if bits:
                    want[key] = bits
            for key, bits in want.items():
                k = GenStrKey()
                k.s = key
                if lpm:
                    k.prefixlen = 32 + 8 * len(key)
                maps.update(fd, k, ctypes.c_uint64(bits))
            for k in list(maps.keys(fd, GenStrKey)):
                raw = bytes(k.s).rstrip(b"\0") if not lpm else bytes(k.s)[: (k.prefixlen - 32) // 8]
                if raw not in want:
                    maps.delete(fd, k)

        rewrite(self.shared_fds["kerneye_bin_names"], self._bin_exact, False)
        rewrite(self.shared_fds["kerneye_bin_prefix"], self._bin_prefix, True)
        rewrite(self.shared_fds["kerneye_bin_postfix"], self._bin_postfix, True)
        cfg = GenConfig(bin_follow_mask=self._follow_mask,
                        bin_slots_used=int(bool(self._bin_exact or self._bin_prefix or self._bin_postfix)))
        maps.update(self.shared_fds["kerneye_config_map"], ctypes.c_uint32(0), cfg)

    def _clear_bin_bits(self, mask: int) -> None:
        """A freed slot must not keep matching processes that got its bit."""
        fd = self.shared_fds["kerneye_execve_map"]
        for k in list(maps.keys(fd, ctypes.c_uint32)):
            v = ExecveMapValue()
            if maps.lookup(fd, k, v) and v.bin_match & mask:
                v.bin_match &= ~mask
                try:
                    maps.update(fd, k, v, maps.BPF_EXIST)
                except KerneyeError:
                    pass  # the process exited meanwhile

    def _backfill(self, slot: int, kind: str, paths: list[str]) -> None:
        """Processes running before the policy: set their bit for the new slot."""
        fd = self.shared_fds["kerneye_execve_map"]
        bit = 1 << slot

        def matches(p: str) -> bool:
            for v in paths:
                if (kind == "eq" and p == v) or (kind == "prefix" and p.startswith(v)) or (
                        kind == "postfix" and p.endswith(v)):
                    return True
            return False

        for k in list(maps.keys(fd, ctypes.c_uint32)):
            pid = k.value
            cands = []
            proc = self.cache.get_by_pid(pid)
            if proc is not None:
                cands.append(proc.binary)
            try:
                cands.append(os.readlink(f"/proc/{pid}/exe"))
            except OSError:
                pass
            if any(matches(c) for c in cands):
                v = ExecveMapValue()
                if maps.lookup(fd, k, v):
                    v.bin_match |= bit
                    maps.update(fd, k, v, maps.BPF_EXIST)

    def _teardown(self, st: PolicyState) -> None:
        # detach first (the hooks stop firing), then clear state. Each
        # tracepoint detach waits for an RCU grace period (~0.1 s here), so
        # links are closed concurrently: 360 links take ~1 s, not ~30 s.
        self._closing = []
        for key, hid in reversed(st.attachments):
            self._slot_remove(key, hid)
        st.attachments.clear()
        if self._closing:
            links, self._closing = self._closing, None
            if len(links) <= 8:
                for lk, sid in links:
                    lk.close()
                    self._free_att.append(sid)
            else:
                # the hooks are already inert (slots and configs cleared):
                # detach in the background so the API answers at once
                th = threading.Thread(target=self._close_links, args=(links,), name="kerneye-detach", daemon=True)
                self._closers.append(th)
                th.start()
        self._closing = None
        if self.obj is not None:
            hfd = self._fd("kerneye_hooks")
            for hid in st.hook_ids:
                maps.update(hfd, ctypes.c_uint32(hid), GenHook())
            stash = self._fd("kerneye_stash")
            gone = set(st.hook_ids)
            for k in list(maps.keys(stash, ctypes.c_uint64)):
                if k.value & 0xFFFFFFFF in gone:
                    maps.delete(stash, k)
        for hid in st.hook_ids:
            self.hooks.pop(hid, None)
            self._free_hooks.append(hid)
        st.hook_ids.clear()
        for fd, k in st.map_keys:
            maps.delete(fd, k)
        st.map_keys.clear()
        self._release_bins(st)

    def _release_bins(self, st: PolicyState) -> None:
        if st.bin_slots:
            freed = 0
            for key in st.bin_slots:
                slot, refs = self._slot_of[key]
                if refs > 1:
                    self._slot_of[key] = (slot, refs - 1)
                    continue
                del self._slot_of[key]
                bit = 1 << slot
                for table in (self._bin_exact, self._bin_prefix, self._bin_postfix):
                    for tkey in list(table):
                        table[tkey] &= ~bit
                        if not table[tkey]:
                            del table[tkey]
                self._follow_mask &= ~bit
                self._free_slots.append(slot)
                freed |= bit
            st.bin_slots.clear()
            if self.obj is not None:
                self._sync_bins()
                if freed:
                    self._clear_bin_bits(freed)

    # --- decoding -------------------------------------------------------------------
    def _runtime(self, hid: int, policy: str, hc: HookC) -> HookRuntime:
        decs = [self._decoder(info) for _spec, info, _g in hc.args]
        rt = HookRuntime(hid, policy, hc, dict(hc.header), decs)
        rt.fast = [(i, self._fast(info, d)) for i, ((_s, info, _g), d) in enumerate(zip(hc.args, decs)) if d is not None]
        head = "".join(f',{json.dumps(k)}:{json.dumps(v)}' for k, v in hc.header.items())
        # no "args" key for a hook without reported arguments: protobuf JSON
        # (and so Tetragon's export) leaves empty repeated fields out
        rt.head_json = head + ',"args":[' if rt.fast else head
        tail = f',"policy_name":{json.dumps(policy)}'
        if hc.message:
            tail += f',"message":{json.dumps(hc.message)}'
        if hc.tags:
            tail += f',"tags":{json.dumps(list(hc.tags))}'
        rt.tail_json = tail
        rt.ret_key = hc.ret.json_key if hc.ret is not None else ""
        return rt

    @staticmethod
    def _fast(info: Any, slow: Callable[[bytes, bool], dict[str, Any]]) -> Callable[[bytes, bool], str]:
        """JSON fragment of one argument, without building dicts for the
        common types (ints and strings); others go through the dict path."""
        t, key = info.type, info.json_key
        lab = f',"label":{json.dumps(info.label)}' if info.label else ""
        if key == "syscall_id":
            frm_ = int.from_bytes
            return lambda b, tr: '{"syscall_id":{"id":' + str(frm_(b[:8], "little", signed=True)) + ',"abi":"x64"}' + lab + "}"
        if t == GenArgType.STRING:
            pre = '{"' + key + '":'
            post = lab + "}"
            return lambda b, tr: pre + _enc(b.decode("utf-8", "backslashreplace")) + post
        if t in (GenArgType.S64, GenArgType.S32, GenArgType.S16, GenArgType.S8, GenArgType.U64, GenArgType.U32,
                 GenArgType.U16, GenArgType.U8):
            signed = t in (GenArgType.S64, GenArgType.S32, GenArgType.S16, GenArgType.S8)
            # 64-bit values are JSON strings, as protobuf's JSON mapping (and
            # so Tetragon's export) writes int64/uint64
            q = '"' if t in (GenArgType.S64, GenArgType.U64) else ""
            pre = '{"' + key + '":' + q
            post = q + lab + "}"
            frm = int.from_bytes
            return lambda b, tr: pre + str(frm(b[:8], "little", signed=signed)) + post
        if t in (GenArgType.FD, GenArgType.FILE, GenArgType.PATH, GenArgType.BINPRM):
            pre = '{"' + key + '":{"path":'
            post = "}" + lab + "}"
            return lambda b, tr: pre + _enc(b[8:].decode("utf-8", "backslashreplace")) + post
        return lambda b, tr: json.dumps(slow(b, tr), ensure_ascii=False, separators=(",", ":"))

    @staticmethod
    def _decoder(info: Any) -> Callable[[bytes, bool], dict[str, Any]] | None:
        t, key, label = info.type, info.json_key, info.label
        if t == GenArgType.NONE:
            return None

        def wrap(d: dict[str, Any]) -> dict[str, Any]:
            if label:
                d["label"] = label
            return d

        if t == GenArgType.STRING:
            return lambda b, tr: wrap({key: b.decode("utf-8", "backslashreplace")})
        if t == GenArgType.CHAR_BUF:
            def cb(b: bytes, tr: bool) -> dict[str, Any]:
                enc = base64.b64encode(b).decode()
                if tr:
                    return wrap({"truncated_bytes_arg": {"bytes_arg": enc, "orig_size": str(len(b))}})  # uint64
                return wrap({key: enc})
            return cb
        if t in (GenArgType.FD, GenArgType.FILE, GenArgType.PATH, GenArgType.BINPRM):
            return lambda b, tr: wrap({key: {"path": b[8:].decode("utf-8", "backslashreplace")}})
        if t == GenArgType.SOCKADDR:
            def sa(b: bytes, tr: bool) -> dict[str, Any]:
                fam = int.from_bytes(b[0:2], "little")
                port = int.from_bytes(b[2:4], "little")
                out: dict[str, Any] = {"family": FAMILIES.get(fam, str(fam))}
                if fam in (2, 10):
                    out["addr"] = _ip(b[8:24], fam)
                    out["port"] = port
                return wrap({key: out})
            return sa
        if t in (GenArgType.SOCK, GenArgType.KSOCK):
            def sk(b: bytes, tr: bool) -> dict[str, Any]:
                fam, typ, proto, state, sport, dport = (int.from_bytes(b[i:i + 2], "little") for i in range(0, 12, 2))
                out: dict[str, Any] = {"family": FAMILIES.get(fam, str(fam)), "type": SOCK_TYPES.get(typ, str(typ)),
                                       "protocol": PROTOS.get(proto, str(proto))}
                if fam in (2, 10):
                    out["saddr"] = _ip(b[16:32], fam)
                    out["daddr"] = _ip(b[32:48], fam)
                    out["sport"] = sport
                    out["dport"] = dport
                out["cookie"] = str(int.from_bytes(b[48:56], "little"))
                out["state"] = TCP_STATES.get(state, str(state))
                return wrap({key: out})
            return sk
        if t == GenArgType.BPF_CMD:
            return lambda b, tr: wrap({key: BPF_CMDS[v] if 0 <= (v := int.from_bytes(b[:8], "little", signed=True)) < len(BPF_CMDS) else str(v)})
        if t == GenArgType.CAP:
            def cap(b: bytes, tr: bool) -> dict[str, Any]:
                v = int.from_bytes(b[:8], "little", signed=True)
                return wrap({key: {"value": v, "name": CAP_NAMES[v] if 0 <= v < len(CAP_NAMES) else f"CAP_{v}"}})
            return cap
        signed = t in (GenArgType.S64, GenArgType.S32, GenArgType.S16, GenArgType.S8)
        if key == "syscall_id":
            return lambda b, tr: wrap({key: {"id": int.from_bytes(b[:8], "little", signed=True), "abi": "x64"}})
        if t in (GenArgType.S64, GenArgType.U64):
            return lambda b, tr: wrap({key: str(int.from_bytes(b[:8], "little", signed=signed))})
        return lambda b, tr: wrap({key: int.from_bytes(b[:8], "little", signed=signed)})

    def handle(self, raw: bytes) -> None:
        """Hot path: one struct unpack, cached per-hook JSON fragments, cached
        process JSON; no per-event dicts for ints, strings and fd paths."""
        h = _HDR.unpack_from(raw)
        # h: op flags pad size ktime | pid pad ktime | hook tid sel flags ret signal trunc | off*5 len*5 | pad
        rt = self.hooks.get(h[8])
        if rt is None:
            self.unknown_hook += 1  # the policy was removed while events were in flight
            return
        base = _MSG_SIZE
        trunc = h[14]
        parts = []
        for i, fn in rt.fast:
            s = base + h[15 + i]
            parts.append(fn(raw[s:s + h[20 + i]], bool(trunc >> i & 1)))
        hc = rt.compiled
        mflags = h[11]
        frag = [rt.head_json, ",".join(parts), "]"] if parts else [rt.head_json]
        if mflags & GenMsgFlag.RETURN and rt.ret_key:
            if rt.ret_key in ("long_arg", "size_arg"):
                frag.append(f',"return":{{"{rt.ret_key}":"{h[12]}"}}')
            else:
                frag.append(f',"return":{{"{rt.ret_key}":{h[12]}}}')
        sel = h[10]
        if mflags & GenMsgFlag.SIGNALED and hc.selectors and sel < len(hc.selectors):
            frag.append(f',"action":"{hc.selectors[sel].action_name}"')
        else:
            frag.append(',"action":"KPROBE_ACTION_POST"')
        frag.append(rt.tail_json)
        body = "".join(frag)
        t = self.clock.wall(h[4])
        key = (h[5], h[7], h[9])
        self.emit_event(hc.event_kind, key, body, t)

    def emit_event(self, kind: str, key: tuple[int, int, int], body: str, t: int) -> None:
        """Emit a policy event (kind, then the fields after process/parent/
        ancestors as a JSON fragment starting with a comma) for the process
        key (pid, ktime or 0, tid); park it in the event cache until that
        process is known. Also used for enforcement decisions."""
        if not self._try_emit(kind, key, body, t, False):
            self.eventcache.park(lambda final: self._try_emit(kind, key, body, t, final))

    def _try_emit(self, kind: str, key: tuple[int, int, int], body: str, t: int, final: bool) -> bool:
        pid, ktime, tid = key
        proc = self.cache.get_by_key(pid, ktime) if ktime else None
        if proc is None:
            # also a process that has exited meanwhile (still in its grace period)
            proc = self.cache.get_recent_by_pid(pid)
        if proc is None:
            if not final:
                return False
            proc = unknown_process(exec_id(self.node, ktime, pid), pid, ktime, tid)
        parent = self.cache.get(proc.parent_exec_id) if proc.parent_exec_id else None
        ancestors = self.cache.ancestors(proc) if self.ancestors else None
        pj = self._process_json
        parts = ['{"', kind, '":{"process":', pj(proc)]
        if parent is not None:
            parts += [',"parent":', pj(parent)]
        if ancestors:
            parts += [',"ancestors":[', ",".join(pj(a) for a in ancestors), "]"]
        parts += [body, '},"node_name":', self._node_json, ',"time":"', self._ts(t), '"}']
        self.emit(Event(kind, proc, parent, t, self.node, ancestors=ancestors, _json="".join(parts)))
        return True

    def _ts(self, ns: int) -> str:
        secs, frac = divmod(ns, 1_000_000_000)
        if secs != self._ts_sec:
            self._ts_sec = secs
            self._ts_prefix = rfc3339(secs * 1_000_000_000)[:-1]  # whole second: no fraction
        return f"{self._ts_prefix}{frac_suffix(frac)}Z" if frac % 1000 == 0 else f"{self._ts_prefix}.{frac:09d}Z"
