"""Runtime enforcement back ends: mechanisms that make an operation fail.

* `cgroup_net`: connect/sendmsg/bind/socket creation, with cgroup BPF
  (bpf/enforce/cgroup_net.bpf.c); rules in maps, scoped to a cgroup subtree.
* `fanotify`: file open and exec, with fanotify permission events answered
  by a responder thread; decisions by (device, inode).
* `capabilities`: which operation can be prevented by which mechanism on
  which kernel; docs/concepts/enforcement.md is generated from it.

These are standalone building blocks; the agent does not use them yet
(issue 4). See docs/concepts/enforcement.md.
"""
