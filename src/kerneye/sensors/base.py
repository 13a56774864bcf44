"""A sensor is data plus hooks: BPF objects to load, programs to attach,
opcode handlers to register, and optional post-load / pre-unload hooks
(cf. Tetragon pkg/sensors/sensors.go).

The manager loads sensors one at a time, shares the base sensor's ring
buffer and process map with every later object (bpf_map__reuse_fd, no
pins), and unloads in reverse order, so a stopped agent leaves nothing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from ..bpf.objects import LoadedObject, ObjectSpec
from ..errors import KerneyeError
from ..observer.dispatch import Dispatcher, Handler

log = logging.getLogger("kerneye.sensors")

# Maps every kerneye object declares (bpf/lib/common.bpf.h) and that the
# base sensor owns.
SHARED_MAPS = ("kerneye_events_rb", "kerneye_execve_map", "kerneye_stats", "kerneye_bin_names",
               "kerneye_bin_prefix", "kerneye_bin_postfix", "kerneye_config_map")


@dataclass
class Sensor:
    name: str
    objects: list[ObjectSpec]
    handlers: dict[int, Handler] = field(default_factory=dict)
    post_load: Callable[["Sensor"], None] | None = None
    pre_unload: Callable[["Sensor"], None] | None = None
    loaded: list[LoadedObject] = field(default_factory=list)
    state: str = "unloaded"  # unloaded | loaded | error
    error: str = ""

    def programs(self) -> list[str]:
        return [p for o in self.loaded for p in o.programs()]


class SensorManager:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.sensors: list[Sensor] = []
        self.shared_fds: dict[str, int] = {}

    def load(self, s: Sensor) -> None:
        """Load, attach, register handlers; on any failure undo all of it."""
        try:
            for spec in s.objects:
                spec.reuse_maps.update({k: v for k, v in self.shared_fds.items() if k not in spec.reuse_maps})
                obj = LoadedObject(spec)
                s.loaded.append(obj)
                obj.attach_all()
            if not self.shared_fds and s.loaded:
                for name in SHARED_MAPS:
                    self.shared_fds[name] = s.loaded[0].map_fd(name)
            for op, fn in s.handlers.items():
                self.dispatcher.register(op, s.name, fn)
            if s.post_load:
                s.post_load(s)
        except KerneyeError as e:
            self._teardown(s)
            s.state, s.error = "error", str(e)
            raise
        s.state = "loaded"
        self.sensors.append(s)
        log.info("sensor %s loaded: %s", s.name, ", ".join(s.programs()))

    def unload(self, s: Sensor) -> None:
        if s.pre_unload:
            try:
                s.pre_unload(s)
            except Exception:  # noqa: BLE001 - unloading must go on
                log.warning("sensor %s: pre-unload hook failed", s.name, exc_info=True)
        self._teardown(s)
        s.state = "unloaded"
        if s in self.sensors:
            self.sensors.remove(s)

    def _teardown(self, s: Sensor) -> None:
        self.dispatcher.unregister_owner(s.name)
        for obj in reversed(s.loaded):
            obj.close()
        s.loaded.clear()

    def unload_all(self) -> None:
        for s in reversed(list(self.sensors)):
            self.unload(s)
        self.shared_fds.clear()
