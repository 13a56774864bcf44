"""Runtime enforcement: mechanisms that make an operation fail, and the
manager that picks one per rule.

Policy side (pure data, no kernel):
* `rules`: Rule / RulePlan, what a policy asks to prevent.
* `translate`: TracingPolicy `Override` selectors -> rules
  (kerneye.policy.enforcement parses the EnforcementPolicy kind).
* `capabilities`: which operation can be prevented by which mechanism on
  which kernel; docs/concepts/enforcement.md is generated from it.
* `evasions`: bypass techniques and their outcome, one kernel test each.

Back ends (each usable alone, with kernel tests):
* `lsm`: BPF-LSM programs (bpf/enforce/lsm.bpf.c): files and exec by inode,
  exec allow lists, raw/packet sockets, module and BPF loads, unlink/rename/
  chmod, kill/ptrace protection.
* `fanotify`: file open and exec with permission events answered by a
  responder thread; decisions by (device, inode) and content hash.
* `cgroup_net`, `cgroup_sys`: cgroup BPF for connect/sendmsg/bind/socket
  creation and for sysctl writes/device access, scoped to a cgroup subtree.
  `_bpfenforcer` holds the life cycle the BPF back ends share.

Agent side:
* `manager`: EnforcementManager: probes the mechanisms, chooses a back end
  per rule, installs and removes rules live, turns decisions into events.
"""
