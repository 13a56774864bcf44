"""kerneye's own enforcement policy: say what to prevent without knowing
kernel function names.

    apiVersion: kerneye.io/v1alpha1
    kind: EnforcementPolicy
    metadata:
      name: lockdown
    spec:
      mode: enforce                 # or monitor (default: enforce)
      errno: EPERM                  # where the back end can choose (cgroup BPF, BPF-LSM)
      scope:                        # default: the whole host
        cgroups: [/sys/fs/cgroup/unified/system.slice/web.service]
        containers: [3f2a9c]        # container id (prefix) -> its cgroup
      exec:
        deny: [/usr/bin/nc, "sha256:<64 hex>"]
        allow: [/usr/bin/python3]   # an allow list: nothing else may run
        mounts: [/home, /tmp]       # allow list only on these mounts (default: all)
      files:
      - paths: [/etc/shadow, /etc/ssh/]      # a directory (or trailing /) covers its tree
        access: write                        # open (default: any open) | write
        action: deny                         # deny (default) | allow: only `binaries` may
        binaries: [/usr/bin/vi]              # only these ... or
        exceptBinaries: [/usr/sbin/sshd]     # ... everyone but these
      protect: [/usr/sbin/kerneye]            # no unlink / rename / chmod (BPF-LSM)
      network:
      - action: deny                          # or allow: an exception to the deny rules
        operations: [connect, sendmsg]        # default; also bind
        cidrs: [10.0.0.0/8, "::/0"]
        ports: [22, "8000-9000"]
        protocol: tcp                         # tcp | udp | icmp | any
        binaries: [/usr/bin/curl]
      rawSockets: deny
      modules: deny
      bpf: deny
      sysctls:
        deny: [kernel/modprobe, net/ipv4/]    # writes; a trailing / is a prefix
      devices:
        deny: ["c 1:5 rwm", "b *:* m"]        # type major:minor access, as in the devices cgroup

Errors carry file:line:col like TracingPolicy errors. The result is a
kerneye.enforce.rules.RulePlan.
"""
from __future__ import annotations

import errno as _errno
import ipaddress
import re

from yaml.nodes import MappingNode, Node, ScalarNode

from ..enforce.rules import LSM_HOOK, Report, Rule, RulePlan
from .errors import PolicyError
from .loader import _POLICY_NAME, _compose, _Walker, walk_document
from .model import TracingPolicy

API_VERSION = "kerneye.io/v1alpha1"
KIND = "EnforcementPolicy"
_TOP = ("apiVersion", "kind", "metadata", "spec")
_SPEC = ("mode", "errno", "scope", "exec", "files", "protect", "network", "rawSockets", "modules", "bpf", "sysctls",
         "devices")
_SCOPE = ("cgroups", "containers")
_EXEC = ("deny", "allow", "mounts", "binaries", "exceptBinaries")
_FILE = ("paths", "access", "action", "binaries", "exceptBinaries")
_NET = ("action", "operations", "cidrs", "ports", "protocol", "binaries", "exceptBinaries")
_SYSCTL = ("deny",)
_DEVICE = ("deny",)
_SHA = re.compile(r"sha256:[0-9a-fA-F]{64}\Z")
_DEV = re.compile(r"([abc])\s+(\*|\d+):(\*|\d+)\s+([rwm]{1,3})\Z")


class _EWalker(_Walker):
    def strings(self, m: dict, key: str, path: str, what: str) -> list[tuple[str, Node]]:
        if key not in m:
            return []
        out = []
        items = self.seq(m[key][1], f"{path}.{key}", what)
        for i, n in enumerate(items or []):
            v = self.value_text(n, f"{path}.{key}[{i}]", f"{what} entries")
            if v is not None:
                out.append((v, n))
        return out

    def choice(self, m: dict, key: str, path: str, options: tuple[str, ...], default: str) -> str:
        if key not in m:
            return default
        v = self.string(m[key][1], f"{path}.{key}", key)
        if v is None:
            return default
        if v not in options:
            self.err("bad-value", m[key][1], f"{path}.{key}", f"{key} must be one of {', '.join(options)}, not {v!r}")
            return default
        return v

    def abs_path(self, v: str, n: Node, path: str) -> str | None:
        if not v.startswith("/"):
            self.err("bad-value", n, path, f"{v!r} must be an absolute path")
            return None
        return v

    def binaries(self, m: dict, path: str) -> tuple[tuple[str, ...], bool]:
        inc = self.strings(m, "binaries", path, "binaries")
        exc = self.strings(m, "exceptBinaries", path, "exceptBinaries")
        if inc and exc:
            self.err("bad-value", m["exceptBinaries"][0], f"{path}.exceptBinaries",
                     "give binaries or exceptBinaries, not both")
        vals = inc or exc
        return tuple(v for v, n in vals if self.abs_path(v, n, f"{path}.binaries")), bool(exc)

    def policy(self, root: Node) -> RulePlan | None:  # type: ignore[override]
        m = self.mapping(root, "", _TOP, "the policy document")
        if m is None:
            return None
        api = self.required_str(m, "apiVersion", root, "", "the policy")
        if api and api != API_VERSION:
            self.err("bad-value", m["apiVersion"][1], "apiVersion",
                     f"apiVersion of an {KIND} must be {API_VERSION!r}, got {api!r}")
        name = ""
        mnode = self.required(m, "metadata", root, "", "the policy")
        if mnode is not None:
            md = self.mapping(mnode, "metadata", ("name", "labels", "annotations"), "metadata")
            if md is not None:
                name = self.required_str(md, "name", mnode, "metadata", "metadata") or ""
                if name and (len(name) > 253 or not _POLICY_NAME.match(name)):
                    self.err("bad-value", md["name"][1], "metadata.name",
                             f"metadata.name {name!r} must be a DNS-1123 name")
        snode = self.required(m, "spec", root, "", "the policy")
        if snode is None:
            return None
        s = self.mapping(snode, "spec", _SPEC, "spec")
        if s is None:
            return None
        mode = self.choice(s, "mode", "spec", ("monitor", "enforce"), "enforce")
        err = _errno.EPERM
        if "errno" in s:
            v = self.value_text(s["errno"][1], "spec.errno", "errno")
            if v is not None:
                if v.lstrip("-").isdigit():
                    err = abs(int(v))
                elif hasattr(_errno, v) and v.startswith("E"):
                    err = getattr(_errno, v)
                else:
                    self.err("bad-value", s["errno"][1], "spec.errno", f"errno {v!r}: give a name (EPERM, EACCES) "
                                                                         "or a number")
        scope: list[str] = []
        if "scope" in s:
            sc = self.mapping(s["scope"][1], "spec.scope", _SCOPE, "scope") or {}
            for v, n in self.strings(sc, "cgroups", "spec.scope", "cgroups"):
                if self.abs_path(v, n, "spec.scope.cgroups"):
                    scope.append(v)
            for v, n in self.strings(sc, "containers", "spec.scope", "containers"):
                if not re.fullmatch(r"[0-9a-f]{6,64}", v):
                    self.err("bad-value", n, "spec.scope.containers", f"{v!r} is not a container id (6 to 64 "
                                                                        "lower-case hex digits)")
                else:
                    scope.append("container:" + v)
        rules: list[Rule] = []

        def rule(op: str, where: str, **kw: object) -> None:
            rules.append(Rule(op, errno=err, scope=tuple(scope), where=where,
                              report=Report("process_lsm", LSM_HOOK[op]), **kw))  # type: ignore[arg-type]

        if "exec" in s:
            e = self.mapping(s["exec"][1], "spec.exec", _EXEC, "exec") or {}
            bins, bnot = self.binaries(e, "spec.exec")
            mounts = tuple(v for v, n in self.strings(e, "mounts", "spec.exec", "mounts")
                           if self.abs_path(v, n, "spec.exec.mounts"))
            for act in ("deny", "allow"):
                vals = []
                for v, n in self.strings(e, act, "spec.exec", f"exec.{act}"):
                    if v.startswith("sha256:"):
                        if not _SHA.match(v):
                            self.err("bad-value", n, f"spec.exec.{act}", f"{v!r}: sha256: needs 64 hex digits")
                            continue
                        vals.append(v.lower())
                    elif self.abs_path(v, n, f"spec.exec.{act}"):
                        vals.append(v)
                if act == "allow" and act in e and not vals and not (bins or scope):
                    self.err("bad-value", e[act][1], f"spec.exec.{act}",
                             "an empty allow list would stop every exec on the host; give binaries (the callers "
                             "it binds) or a scope, or list what may run")
                if vals or (act == "allow" and act in e and (bins or scope)):
                    rule("exec", f"spec.exec.{act}", action=act, paths=tuple(vals), binaries=bins, binaries_not=bnot,
                         mounts=mounts if act == "allow" else ())
        for i, fnode in enumerate(self.seq(s["files"][1], "spec.files", "files") or [] if "files" in s else []):
            p = f"spec.files[{i}]"
            f = self.mapping(fnode, p, _FILE, "a files entry")
            if f is None:
                continue
            paths = tuple(v for v, n in self.strings(f, "paths", p, "paths") if self.abs_path(v, n, f"{p}.paths"))
            if not paths:
                self.err("missing-field", fnode, f"{p}.paths", "a files entry needs paths")
                continue
            access = self.choice(f, "access", p, ("open", "write"), "open")
            act = self.choice(f, "action", p, ("deny", "allow"), "deny")
            bins, bnot = self.binaries(f, p)
            if act == "allow":
                # "only these binaries may": deny everyone else
                if not bins or bnot:
                    self.err("bad-value", f["action"][1], f"{p}.action",
                             "action allow needs binaries (the only ones allowed); for everyone but some, "
                             "write action deny with exceptBinaries")
                bnot = True
            rule(access, p, paths=paths, binaries=bins, binaries_not=bnot)
        if "protect" in s:
            paths = tuple(v for v, n in self.strings(s, "protect", "spec", "protect")
                          if self.abs_path(v, n, "spec.protect"))
            if paths:
                rule("protect", "spec.protect", paths=paths)
        for i, nnode in enumerate(self.seq(s["network"][1], "spec.network", "network") or []
                                  if "network" in s else []):
            p = f"spec.network[{i}]"
            n = self.mapping(nnode, p, _NET, "a network entry")
            if n is None:
                continue
            act = self.choice(n, "action", p, ("deny", "allow"), "deny")
            ops = [v for v, _ in self.strings(n, "operations", p, "operations")] or ["connect", "sendmsg"]
            for o in ops:
                if o not in ("connect", "sendmsg", "bind"):
                    self.err("bad-value", n["operations"][1], f"{p}.operations",
                             f"operation {o!r}: one of connect, sendmsg, bind")
            cidrs = []
            for v, vn in self.strings(n, "cidrs", p, "cidrs"):
                try:
                    cidrs.append(str(ipaddress.ip_network(v, strict=False)))
                except ValueError:
                    self.err("bad-value", vn, f"{p}.cidrs", f"{v!r} is not an IP address or CIDR")
            ports = []
            for v, vn in self.strings(n, "ports", p, "ports"):
                lo, _, hi = v.partition("-")
                if not lo.isdigit() or not (hi or lo).isdigit() or not 0 <= int(lo) <= int(hi or lo) <= 65535:
                    self.err("bad-value", vn, f"{p}.ports", f"{v!r} is not a port or a lo-hi range in 0..65535")
                    continue
                ports.append((int(lo), int(hi or lo)))
            proto = self.choice(n, "protocol", p, ("tcp", "udp", "icmp", "icmpv6", "any"), "any")
            bins, bnot = self.binaries(n, p)
            for o in ops:
                if o in ("connect", "sendmsg", "bind"):
                    rule(o, p, action=act, cidrs=tuple(cidrs), ports=tuple(ports), protocol=proto, binaries=bins,
                         binaries_not=bnot)
        for key, op in (("rawSockets", "raw_socket"), ("modules", "module"), ("bpf", "bpf")):
            if key in s and self.choice(s, key, "spec", ("deny", "allow"), "allow") == "deny":
                rule(op, f"spec.{key}")
        if "sysctls" in s:
            sy = self.mapping(s["sysctls"][1], "spec.sysctls", _SYSCTL, "sysctls") or {}
            names = []
            for v, vn in self.strings(sy, "deny", "spec.sysctls", "sysctls.deny"):
                if not re.fullmatch(r"[A-Za-z0-9_./-]+", v) or v.startswith("/"):
                    self.err("bad-value", vn, "spec.sysctls.deny", f"{v!r}: a sysctl name like kernel/modprobe "
                                                                     "(net/ipv4/ for a prefix)")
                    continue
                names.append(v.replace(".", "/") if "/" not in v else v)
            if names:
                rule("sysctl", "spec.sysctls", sysctls=tuple(names))
        if "devices" in s:
            dv = self.mapping(s["devices"][1], "spec.devices", _DEVICE, "devices") or {}
            devs = []
            for v, vn in self.strings(dv, "deny", "spec.devices", "devices.deny"):
                mm = _DEV.match(v.strip())
                if not mm:
                    self.err("bad-value", vn, "spec.devices.deny",
                             f"{v!r}: write 'TYPE MAJOR:MINOR ACCESS', e.g. 'c 1:5 rwm' (TYPE a, b or c; * for any)")
                    continue
                t, ma, mi, acc = mm.groups()
                devs.append((t, -1 if ma == "*" else int(ma), -1 if mi == "*" else int(mi), acc))
            if devs:
                rule("device", "spec.devices", devices=tuple(devs))
        if not rules and not self.errors:
            self.err("missing-field", snode, "spec", f"the {KIND} prevents nothing: give exec, files, protect, "
                                                     "network, rawSockets, modules, bpf, sysctls or devices")
        return RulePlan(name, mode, rules, self.file, KIND)


def load_any(text: str, source: str = "<string>") -> "TracingPolicy | RulePlan":
    """One policy document of either kind, routed by its `kind` (a
    TracingPolicy, or an EnforcementPolicy's RulePlan)."""
    root = _compose(text, source)
    kind = None
    if isinstance(root, MappingNode):
        kind = next((v.value for k, v in root.value if isinstance(k, ScalarNode) and k.value == "kind"
                     and isinstance(v, ScalarNode)), None)
    if kind == KIND:
        return walk_document(root, source, _EWalker(source, None))
    return walk_document(root, source, _Walker(source, None))


def load_str(text: str, source: str = "<string>") -> RulePlan:
    plan: RulePlan = walk_document(text, source, _EWalker(source, None))
    return plan


def load_file(path: str) -> RulePlan:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError("io", f"cannot read policy file: {e}", file=path) from None
    return load_str(text, path)
