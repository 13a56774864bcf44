"""Container IDs from cgroup paths.

Runtimes name a container's cgroup after its 64-hex-digit ID, with their own
prefix and suffix:
  docker      /system.slice/docker-<id>.scope      /docker/<id>
  containerd  .../cri-containerd-<id>.scope        /kubepods/.../<id>
  cri-o       .../crio-<id>.scope  crio-conmon-<id>.scope (the monitor)
  podman      .../libpod-<id>.scope                 libpod-conmon-<id>.scope
We take the deepest path component that carries such an ID; conmon scopes
are monitors, not containers.
"""
from __future__ import annotations

import re

_ID = re.compile(r"^(?:(?:docker|cri-containerd|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?$")

# Tetragon's "docker" field is a prefix of the ID (its docs show 31 chars).
DOCKER_ID_LEN = 31


def container_id(cgroup_path: str) -> str:
    """Full 64-hex container ID in cgroup_path, or "" for host processes."""
    for comp in reversed(cgroup_path.split("/")):
        if "conmon" in comp:
            continue
        m = _ID.match(comp)
        if m:
            return m.group(1)
    return ""
