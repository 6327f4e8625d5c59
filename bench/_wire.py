"""Round trips counted at the wire: a TCP proxy between the client and PostgreSQL.

A round trip is a turn of the conversation: the client speaks, then waits for the server's answer. The proxy
forwards bytes both ways and counts each time the client starts speaking after the server has spoken (or first
on a connection), so it counts what any driver does — pinging, BEGIN, each wait of a statement, COMMIT —
without touching the driver. pg8000 writes each request with one flush and reads until ReadyForQuery before it
writes again, so on loopback every turn is exactly one wait.

    with WireCounter("127.0.0.1", 5432) as wire:
        url = wire.url_for("postgresql+pg8000://postgres@127.0.0.1:5432/db")
        before = wire.round_trips
        ...
        print(wire.round_trips - before)
"""

from __future__ import annotations

import selectors
import socket
import threading
from types import TracebackType

from sqlalchemy.engine import make_url


class WireCounter:
    def __init__(self, host: str = "127.0.0.1", port: int = 5432) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._trips = 0
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def round_trips(self) -> int:
        with self._lock:
            return self._trips

    def url_for(self, url: str) -> str:
        """``url`` pointed at the proxy instead of the server."""
        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def close(self) -> None:
        self._closing = True
        self._listener.close()

    def __enter__(self) -> WireCounter:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._pump, args=(client, server), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, server)
        selector.register(server, selectors.EVENT_READ, client)
        client_spoke_last = False
        try:
            while True:
                for key, _ in selector.select():
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is client:
                        if not client_spoke_last:
                            with self._lock:
                                self._trips += 1
                        client_spoke_last = True
                    else:
                        client_spoke_last = False
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            client.close()
            server.close()
