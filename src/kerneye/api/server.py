"""Local API server: /run/kerneye/kerneye.sock, root only.

Protocol: the client sends one JSON line, {"cmd": "status"} or
{"cmd": "getevents", "filter": {...EventFilter fields...}}; the server answers
with JSON lines (the status object, or a stream of events in the export
format). Access: the socket is mode 0600 in a 0700 directory and the peer's
uid is checked with SO_PEERCRED.

Each getevents client has its own bounded queue and writer thread: a client
that stops reading loses events (counted, reported in status) and never slows
the agent or other clients.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import socket
import struct
import threading
from typing import Any

from ..errors import ConfigError
from ..events.event import Event
from ..export.filter import EventFilter

log = logging.getLogger("kerneye.api")
_SENTINEL = ""


class _Client:
    def __init__(self, conn: socket.socket, flt: EventFilter, maxq: int) -> None:
        self.conn = conn
        self.filter = flt
        self.q: queue.Queue[str] = queue.Queue(maxsize=maxq)
        self.sent = 0
        self.dropped = 0
        self.alive = True


class ApiServer:
    name = "api"

    def __init__(self, path: str, agent: Any, client_queue: int = 65536) -> None:
        self.path = path
        self.agent = agent
        self.client_queue = client_queue
        self._clients: list[_Client] = []
        self._lock = threading.Lock()
        self._dropped_gone = 0
        self.exported = 0
        d = os.path.dirname(path)
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)
            if os.path.exists(path):
                os.unlink(path)  # stale: we hold the agent lock
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                self.sock.bind(path)
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
            self.sock.listen(16)
        except OSError as e:
            raise ConfigError(f"cannot serve the API at {path}: {e.strerror}; check --run-dir") from None
        self._thread = threading.Thread(target=self._accept, name="kerneye-api", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="kerneye-api-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            if uid != 0:
                self._reply(conn, {"error": "permission denied: the kerneye API is for root only"})
                return
            conn.settimeout(10)
            f = conn.makefile("rb")
            line = f.readline(1 << 20)
            conn.settimeout(None)
            try:
                req = json.loads(line or b"{}")
            except ValueError:
                self._reply(conn, {"error": "bad request: expected one JSON line"})
                return
            cmd = req.get("cmd")
            if cmd == "status":
                self._reply(conn, self.agent.status())
            elif isinstance(cmd, str) and cmd.startswith("tp_"):
                try:
                    self._reply(conn, self.agent.policy_command(req))
                except Exception as e:  # noqa: BLE001 - reported to the client as one line
                    self._reply(conn, {"error": str(e) if str(e) else type(e).__name__})
            elif cmd == "getevents":
                try:
                    flt = EventFilter.from_dict(req.get("filter") or {})
                except Exception as e:  # noqa: BLE001 - reported to the client
                    self._reply(conn, {"error": f"bad filter: {e}"})
                    return
                self._stream(conn, flt)
                return
            else:
                self._reply(conn, {"error": f"unknown command {cmd!r}; use status or getevents"})
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _reply(conn: socket.socket, obj: dict[str, Any]) -> None:
        conn.sendall((json.dumps(obj) + "\n").encode())

    def _stream(self, conn: socket.socket, flt: EventFilter) -> None:
        c = _Client(conn, flt, self.client_queue)
        self._reply(conn, {"ok": True})
        with self._lock:
            self._clients.append(c)
        try:
            while c.alive:
                line = c.q.get()
                if line is _SENTINEL:
                    break
                buf = [line]
                while len(buf) < 512:
                    try:
                        nxt = c.q.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _SENTINEL:
                        c.alive = False
                        break
                    buf.append(nxt)
                conn.sendall(("\n".join(buf) + "\n").encode())
                c.sent += len(buf)
        except OSError:
            pass
        finally:
            c.alive = False
            with self._lock:
                if c in self._clients:
                    self._clients.remove(c)
                    self._dropped_gone += c.dropped

    # --- Listener ------------------------------------------------------------
    def on_event(self, ev: Event) -> None:
        if not self._clients:
            return
        with self._lock:
            clients = list(self._clients)
        d = None
        for c in clients:
            if not c.alive:
                continue
            if not c.filter.is_empty():
                if d is None:
                    d = ev.to_dict()
                if not c.filter.match(d):
                    continue
            try:
                c.q.put_nowait(ev.to_json())
                self.exported += 1
            except queue.Full:
                c.dropped += 1

    def flush(self) -> None:
        pass

    def dropped(self) -> int:
        with self._lock:
            return self._dropped_gone + sum(c.dropped for c in self._clients)

    def clients(self) -> list[dict[str, int]]:
        with self._lock:
            return [{"sent": c.sent, "dropped": c.dropped, "queued": c.q.qsize()} for c in self._clients]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            for c in self._clients:
                c.alive = False
                try:
                    c.q.put_nowait(_SENTINEL)
                except queue.Full:
                    pass
                try:
                    c.conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        try:
            os.unlink(self.path)
        except OSError:
            pass
