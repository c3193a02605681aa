"""Example upload service for docker-compose.yml: it refuses images dedupd already has.

``PUT /NAME`` (or ``POST /NAME``) with the image bytes as the body:

1. the bytes go to a hidden temporary file in the upload folder (``.NAME.XXXX.tmp``: dedupd ignores
   names starting with a dot, and the final rename stays on one file system);
2. ``dedupd query --fail-on-duplicate --json --socket SOCKET TMPFILE`` asks the dedupd sidecar over
   its Unix socket (the shared ``/run/dedupd`` volume; this service runs with the daemon's gid, and
   the socket is mode 0660);
3. exit 3 (a duplicate): ``409`` with the indexed copies, the file is dropped; exit 0: the file is
   renamed to NAME, ``201``; dedupd cannot answer (exit 4: not running, or 1: an error such as an
   unreadable image): ``ON_DEDUPD_ERROR=accept`` (default) keeps the upload, ``reject`` answers 503.

Environment: ``UPLOAD_DIR`` (default /srv/uploads), ``DEDUPD_SOCKET`` (/run/dedupd/dedupd.sock),
``DEDUPD_CLI`` (``dedupd``), ``PORT`` (8080), ``MAX_UPLOAD_BYTES`` (50 MB), ``ON_DEDUPD_ERROR``.
Standard library only. The same check with curl instead of the CLI::

    curl --unix-socket /run/dedupd/dedupd.sock --data-binary @photo.jpg http://localhost/v1/query
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import subprocess
import tempfile

UPLOAD_DIR = os.environ.get("UPLOAD_DIR", "/srv/uploads")
SOCKET = os.environ.get("DEDUPD_SOCKET", "/run/dedupd/dedupd.sock")
CLI = shlex.split(os.environ.get("DEDUPD_CLI", "dedupd"))
MAX_BYTES = int(os.environ.get("MAX_UPLOAD_BYTES", str(50 << 20)))
ON_ERROR = os.environ.get("ON_DEDUPD_ERROR", "accept")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
EXIT_DUPLICATE, EXIT_NOT_RUNNING = 3, 4


def check(path: str) -> tuple[int, dict]:
    """``dedupd query --fail-on-duplicate`` on ``path``: (exit code, its JSON answer or {})."""
    proc = subprocess.run([*CLI, "query", "--fail-on-duplicate", "--json", "--socket", SOCKET, path],
                          capture_output=True, text=True, timeout=120, check=False)
    try:
        answer = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except ValueError:
        answer = {}
    if proc.returncode not in (0, EXIT_DUPLICATE):
        answer.setdefault("detail", proc.stderr.strip() or proc.stdout.strip())
    return proc.returncode, answer


class Upload(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:  # noqa: N802 (http.server's name)
        name = self.path.lstrip("/")
        if not NAME.match(name):
            return self.reply(400, {"error": "name the file in the URL: PUT /photo.jpg (letters, digits, . _ -)"})
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self.reply(411, {"error": "send Content-Length"})
        if not 0 < length <= MAX_BYTES:
            return self.reply(413, {"error": f"1 to {MAX_BYTES} bytes"})
        target = os.path.join(UPLOAD_DIR, name)
        if os.path.lexists(target):
            return self.reply(409, {"error": f"{name} exists"})
        return self.reply(*self._receive(name, target, length))

    def _receive(self, name: str, target: str, length: int) -> tuple[int, dict]:
        """Save the body to ``target`` unless dedupd calls it a duplicate: (status, answer). The
        temporary file is gone before the client hears the answer."""
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=UPLOAD_DIR)
        try:
            with os.fdopen(fd, "wb") as f:
                left = length
                while left:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        return 400, {"error": "body shorter than Content-Length"}
                    f.write(chunk)
                    left -= len(chunk)
            code, answer = check(tmp)
            if code == EXIT_DUPLICATE:
                return 409, {"error": "duplicate", "name": name,
                             "duplicates": [d["path"] for d in answer.get("duplicates", [])]}
            if code != 0 and ON_ERROR == "reject":
                return 503, {"error": "dedupd could not check the upload", "exit": code,
                             "detail": answer.get("detail", "")}
            os.chmod(tmp, 0o644 & ~_umask())
            os.rename(tmp, target)
            tmp = ""
            checked = code == 0
            return 201, {"name": name, "checked": checked,
                         **({} if checked else {"detail": answer.get("detail", "")})}
        finally:
            if tmp:
                os.unlink(tmp)

    do_POST = do_PUT

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        print("upload: " + format % args, flush=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main() -> None:
    os.makedirs(UPLOAD_DIR, exist_ok=True)
    server = http.server.ThreadingHTTPServer(("", int(os.environ.get("PORT", "8080"))), Upload)
    print(f"upload: serving on port {server.server_address[1]}, saving to {UPLOAD_DIR}, checking with dedupd "
          f"at {SOCKET}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
