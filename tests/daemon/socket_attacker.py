"""One hostile local process against the daemon's socket (run as a subprocess by the abuse tests).

``python -m tests.daemon.socket_attacker SOCK --seconds 10 --idle 400 --trickle 8 --garbage 2
--oversize 1 --burst 0`` attacks for the given time, then prints its counters as one JSON line:

* ``--idle N``: hold N idle connections (no byte sent), reopening each as soon as it is cut;
* ``--trickle N``: N connections sending a request head one byte every 0.3 s (slowloris);
* ``--garbage N``: N loops of malformed requests (garbage, HTTP/0.9, broken headers, 100 KB URLs,
  ``Content-Length: +5``...), each on a fresh connection, reading whatever comes back;
* ``--oversize N``: N loops announcing a 1 TB body and streaming bytes into it.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import threading
import time

MALFORMED = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"GET /v1/status\r\n",
    b"GET /v1/status HTTP/1.1\r\nbadheader\r\n",
    b"POST /v1/query HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
    b"POST /v1/query HTTP/1.1\r\nContent-Length: 1_0\r\n\r\n0123456789",
    b"GET /v1/" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
    b"GET /v1/status HTTP/1.1\r\n" + b"X: y\r\n" * 1000 + b"\r\n",
    "GET /v1/stätus HTTP/1.1\r\n\r\n".encode(),
    b"GET /v1/duplicates?path=/etc/passwd HTTP/1.1\r\n\r\n",
    b"GET /v1/duplicates?path=%2F..%2F..%2Fetc%2Fshadow HTTP/1.1\r\n\r\n",
    os.urandom(512),
]


class Attack:
    def __init__(self, path: str, seconds: float) -> None:
        self.path = path
        self.end = time.monotonic() + seconds
        self.lock = threading.Lock()
        self.stats = {"opened": 0, "cut": 0, "refused_503": 0, "connect_errors": 0, "garbage": 0,
                      "garbage_answered": 0, "trickle_cut": 0, "oversize": 0}

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.stats[key] += n

    def running(self) -> bool:
        return time.monotonic() < self.end

    def hoard(self, want: int) -> None:
        """Keep ``want`` idle connections open; reopen what the daemon cuts."""
        sel = selectors.DefaultSelector()
        held = 0
        while self.running():
            while held < want and self.running():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.connect(self.path)
                except OSError:  # EAGAIN: the queue is full; try again in a moment
                    s.close()
                    self.count("connect_errors")
                    break
                sel.register(s, selectors.EVENT_READ)
                held += 1
                self.count("opened")
            for key, _ in sel.select(0.05):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                self.count("refused_503" if data.startswith(b"HTTP/1.1 503") else "cut")
                sel.unregister(s)
                s.close()
                held -= 1
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]

    def trickle(self) -> None:
        head = b"GET /v1/status HTTP/1.1\r\nX-Slow: " + b"z" * 10_000
        while self.running():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(self.path)
                    for ch in head:
                        if not self.running():
                            return
                        s.sendall(bytes([ch]))
                        time.sleep(0.3)
                except OSError:
                    self.count("trickle_cut")

    def garbage(self) -> None:
        i = 0
        while self.running():
            data = MALFORMED[i % len(MALFORMED)]
            i += 1
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(3)
                try:
                    s.connect(self.path)
                    s.sendall(data)
                    if s.recv(65536):
                        self.count("garbage_answered")
                except OSError:
                    pass
            self.count("garbage")

    def oversize(self) -> None:
        chunk = b"\0" * 65536
        while self.running():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(3)
                try:
                    s.connect(self.path)
                    s.sendall(b"POST /v1/query HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\n")
                    for _ in range(200):
                        s.sendall(chunk)
                except OSError:
                    pass
            self.count("oversize")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--idle", type=int, default=0)
    ap.add_argument("--trickle", type=int, default=0)
    ap.add_argument("--garbage", type=int, default=0)
    ap.add_argument("--oversize", type=int, default=0)
    args = ap.parse_args()
    attack = Attack(args.socket, args.seconds)
    jobs = [(attack.hoard, (args.idle,))] if args.idle else []
    jobs += [(attack.trickle, ())] * args.trickle + [(attack.garbage, ())] * args.garbage
    jobs += [(attack.oversize, ())] * args.oversize
    threads = [threading.Thread(target=fn, args=a, daemon=True) for fn, a in jobs]
    for t in threads:
        t.start()
    print("started", flush=True)
    for t in threads:
        t.join(args.seconds + 10)
    print(json.dumps(attack.stats), flush=True)


if __name__ == "__main__":
    main()
