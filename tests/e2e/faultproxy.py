"""A small TCP proxy that stands between two processes of a test and injects
faults on command: pass bytes through, answer HTTP 5xx itself, hold a request
without answering (a timeout for the client), or refuse connections (a cut
link). Used in front of the collector (the filter's view) and in front of
PostgreSQL (the collector's view)."""
from __future__ import annotations

import socket
import threading

import procs

PASS, HTTP_503, HANG, CUT = "pass", "503", "hang", "cut"


class FaultProxy:
    def __init__(self, target_port: int, port: int | None = None):
        self.target_port = target_port
        self.port = port or procs.free_port()
        self.mode = PASS
        self.faulted = 0  # connections answered with a fault
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", self.port))
        self._srv.listen(64)
        self._srv.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def set(self, mode: str) -> None:
        """Switch the fault; CUT also severs every open connection."""
        self.mode = mode
        if mode in (CUT, HTTP_503, HANG):
            self.sever()

    def sever(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def stop(self) -> None:
        self._stop.set()
        self.sever()
        self._srv.close()

    def _track(self, *socks) -> None:
        with self._lock:
            self._conns.extend(socks)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            mode = self.mode
            if mode == PASS:
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                self._track(client, upstream)
                threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
                threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
            else:
                self.faulted += 1
                self._track(client)
                threading.Thread(target=self._fault, args=(client, mode), daemon=True).start()

    def _fault(self, client: socket.socket, mode: str) -> None:
        try:
            if mode == CUT:
                client.close()
                return
            while True:  # read requests; answer each (503) or never (hang)
                data = client.recv(65536)
                if not data:
                    break
                if mode == HTTP_503 and b"\r\n\r\n" in data:
                    body = b'{"error":"injected fault"}'
                    client.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                                   b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
                    break
        except OSError:
            pass
        finally:
            client.close()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
