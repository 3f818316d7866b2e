"""Another local user's fake PostgreSQL: it asks every client for its password in clear text."""

import contextlib
import socket
import threading
from pathlib import Path

SSL_REQUEST, GSS_REQUEST = (80877103).to_bytes(4, "big"), (80877104).to_bytes(4, "big")


class Impostor:
    def __init__(self) -> None:
        self.received: list[bytes] = []  # from each client: its startup packet, its answer
        self.done = threading.Event()

    def listen(self, port: int = 0) -> int | None:
        """Serve on 127.0.0.1:port (0: any free one); the port, None when it is taken."""
        try:
            listener = socket.create_server(("127.0.0.1", port))
        except OSError:  # our server bound it first
            return None
        threading.Thread(target=self.serve, args=(listener,), daemon=True).start()
        return listener.getsockname()[1]

    def race(self, name: str) -> None:
        """Until `done`, listen on the port of each postgres whose command line names `name`."""

        def watch() -> None:
            seen = set()
            while not self.done.is_set():
                for proc in Path("/proc").glob("[0-9]*"):
                    with contextlib.suppress(OSError):
                        args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
                        # Any user can read a postgres's `-cport=N` in /proc.
                        port = next((a[7:] for a in args if a.startswith("-cport=")), None)
                        if port and port not in seen and any(name in a for a in args):
                            seen.add(port)
                            self.listen(int(port))

        threading.Thread(target=watch, daemon=True).start()

    def serve(self, listener: socket.socket) -> None:
        while True:
            connection, _ = listener.accept()
            with connection, contextlib.suppress(OSError):
                connection.settimeout(2)
                packet = connection.recv(4096)
                while packet[4:8] in (SSL_REQUEST, GSS_REQUEST):
                    connection.sendall(b"N")  # no encryption: go on in the clear
                    packet = connection.recv(4096)
                self.received.append(packet)  # before the client can give up: kept
                connection.sendall(b"R" + (8).to_bytes(4, "big") + (3).to_bytes(4, "big"))
                self.received.append(connection.recv(4096))
