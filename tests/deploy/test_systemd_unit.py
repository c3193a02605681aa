"""The systemd deployment: unit file, sysusers/tmpfiles snippets, and the notify protocol as systemd sees it.

What runs here (and in CI, where ``.ci/run`` installs Debian's ``systemd`` package when
``systemd-analyze`` is missing, so these are never skipped there):

* ``systemd-analyze verify`` on ``systemd/dedupd.service`` (ExecStart rewritten to this venv's
  ``dedupd``, since verify requires the binary to exist); any warning fails the test, because
  verify exits 0 even for unknown keys or unparsable values.
* ``systemd-analyze security --offline=yes``: the hardening's exposure score stays low.
* ``systemd-sysusers --root`` / ``systemd-tmpfiles --root --create`` apply the snippets to a scratch root.
* The real daemon (``python -m dedupd run``) under a fake ``$NOTIFY_SOCKET``, with the environment
  systemd gives it (``WATCHDOG_USEC``, ``STATE_DIRECTORY``, ``RUNTIME_DIRECTORY``): READY=1,
  STATUS=, WATCHDOG=1, SIGHUP → RELOADING=1 then READY=1, SIGTERM → STOPPING=1 and exit 0.
* ``MemoryDenyWriteExecute`` guidance in the unit: hashing works under W^X, PyTorch's CPU kernels don't.
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from dedupd.errors import ModelUnavailableError

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "dedupd.service"
SYSUSERS = REPO / "systemd" / "dedupd.sysusers.conf"
TMPFILES = REPO / "systemd" / "dedupd.tmpfiles.conf"
DROPIN = REPO / "systemd" / "dedupd.service.d" / "quarantine.conf"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
#: where the documented install puts the venv (docs/deploy.md: python3 -m venv /opt/dedupd)
VENV = "/opt/dedupd"
IN_CI = bool(os.environ.get("CI"))


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections → key → every value in order (systemd keys may repeat); continuation lines joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"setting outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def one(unit: dict[str, dict[str, list[str]]], key: str, section: str = "Service") -> str:
    values = unit[section].get(key)
    assert values, f"{section}.{key} is not set in {UNIT.name}"
    return values[-1]


def tool(name: str) -> str:
    """Path of a systemd tool; fails in CI (where .ci/run installs it), skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not found: install Debian's 'systemd' package (.ci/run does)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def seconds(value: str) -> float:
    """A systemd time span (``90``, ``60s``, ``10min``, ``1min 30s``) in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for num, unit_name in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(num) * units[unit_name]
    return total


def dedupd_executable() -> str:
    exe = Path(sys.executable).with_name("dedupd")
    found = str(exe) if exe.exists() else shutil.which("dedupd")
    assert found, "the dedupd console script is not installed (pip install -e .)"
    return found


def unit_for_verify(tmp_path: Path) -> Path:
    """The unit with ExecStart's binary replaced by this environment's dedupd (arguments kept)."""
    text = UNIT.read_text()
    exec_start = re.search(r"^ExecStart=(\S+)", text, re.MULTILINE)
    assert exec_start is not None
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={exec_start.group(1)}", f"ExecStart={dedupd_executable()}", 1))
    return copy


# -- the unit file ----------------------------------------------------------------------------


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    copy = unit_for_verify(tmp_path)
    proc = subprocess.run([analyze, "verify", "--man=no", str(copy)], check=False, capture_output=True,
                          text=True, timeout=120)
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, output
    # verify exits 0 on unknown keys and unparsable values ("..., ignoring"): any output is a failure
    assert output == "", f"systemd-analyze verify complained:\n{output}"


def test_systemd_analyze_verify_catches_mistakes(tmp_path: Path) -> None:
    """The check above is meaningful: a typo in a key or value is reported."""
    analyze = tool("systemd-analyze")
    copy = unit_for_verify(tmp_path)
    copy.write_text(copy.read_text().replace("ProtectSystem=strict", "ProtectSystem=strikt\nWatchdogSecs=5"))
    proc = subprocess.run([analyze, "verify", "--man=no", str(copy)], check=False, capture_output=True,
                          text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert "WatchdogSecs" in output and "strikt" in output


def documented_install() -> str:
    """The install block of docs/deploy.md (systemd section)."""
    doc = DEPLOY_DOC.read_text()
    block = doc[doc.index("### Install (as root)"):]
    return block[block.index("```bash") + 7:block.index("```", block.index("```bash") + 7)]


@pytest.mark.slow
def test_documented_install_gives_execstart_and_documentation(tmp_path: Path) -> None:
    """Run the documented install's venv + pip steps into a temp prefix: the unit's ExecStart is the
    console script pip makes there (no symlink by hand), it runs, it carries the package data, and
    the unit (with the quarantine drop-in) verifies with only the prefix changed."""
    steps = documented_install()
    assert f"python3 -m venv {VENV}\n" in steps and f"{VENV}/bin/pip install /path/to/dedupd" in steps
    assert "ln -s" not in steps, "the unit must not need a hand-made symlink"
    unit_text = UNIT.read_text()
    docs = re.search(r"^Documentation=(.*)$", unit_text, re.MULTILINE)
    assert docs is not None
    for url in docs.group(1).split():
        if url.startswith("file://"):
            target = url.removeprefix("file://")
            installed = re.search(rf"install -D -m 0644 /path/to/dedupd/(\S+) {re.escape(target)}", steps)
            assert installed and (REPO / installed.group(1)).is_file(), f"nothing installs {target}"
        else:
            assert url.startswith("man:"), url
    prefix = tmp_path / VENV.strip("/")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(prefix)], check=True, capture_output=True, timeout=300)
    pip = subprocess.run([str(prefix / "bin" / "pip"), "install", "-q", "--no-deps", str(REPO)], check=False,
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    script = prefix / "bin" / "dedupd"
    assert os.access(script, os.X_OK)
    version = subprocess.run([str(script), "--version"], check=True, capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith("dedupd ")
    site = next(prefix.glob("lib/python3*/site-packages/dedupd"))
    assert (site / "review" / "page.js").is_file() and (site / "review" / "page.html").is_file()
    assert len(list((site / "demo_photos").glob("*.jpg"))) == 13 and (site / "demo_photos" / "CREDITS.md").is_file()
    analyze = tool("systemd-analyze")
    units = tmp_path / "units"
    (units / "dedupd.service.d").mkdir(parents=True)
    (units / UNIT.name).write_text(unit_text.replace(f"ExecStart={VENV}/", f"ExecStart={prefix}/"))
    shutil.copy(DROPIN, units / "dedupd.service.d" / DROPIN.name)
    proc = subprocess.run([analyze, "verify", "--man=no", str(units / UNIT.name)], check=False, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"})
    assert proc.returncode == 0 and (proc.stdout + proc.stderr).strip() == "", proc.stdout + proc.stderr


def test_verify_reads_the_quarantine_dropin(tmp_path: Path) -> None:
    """The drop-in is checked too: a typo in it is reported (SYSTEMD_UNIT_PATH makes verify read it)."""
    analyze = tool("systemd-analyze")
    units = tmp_path / "units"
    (units / "dedupd.service.d").mkdir(parents=True)
    unit_for_verify(units)
    (units / "dedupd.service.d" / DROPIN.name).write_text(DROPIN.read_text().replace("ReadWritePaths", "ReadWritePathz"))
    proc = subprocess.run([analyze, "verify", "--man=no", str(units / UNIT.name)], check=False, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"})
    assert "ReadWritePathz" in proc.stdout + proc.stderr


def test_hardening_exposure_score_is_low(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    copy = unit_for_verify(tmp_path)
    proc = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", "--threshold=20", str(copy)],
                          check=False, capture_output=True, text=True, timeout=120)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert found, proc.stdout + proc.stderr
    # 0 = fully locked down, 10 = unprotected; "OK" is below 2.0 (measured 0.8 "SAFE" with systemd 252)
    assert float(found.group(1)) <= 2.0, proc.stdout


def test_unit_has_the_deployment_contract(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "Type") == "notify"
    exec_start = shlex.split(one(unit, "ExecStart"))
    assert exec_start == [f"{VENV}/bin/dedupd", "run", "--config", "/etc/dedupd/config.yaml"]
    assert one(unit, "UMask") == "0027", "reports group-readable (0640 with report_mode 0644), never world"
    assert one(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, "Restart") == "on-failure"
    assert 10 <= seconds(one(unit, "WatchdogSec")) <= 600
    # the daemon's graceful shutdown takes up to ~10 s (thread joins) plus the final report write
    assert seconds(one(unit, "TimeoutStopSec")) >= 30
    assert one(unit, "KillMode") == "mixed"  # SIGTERM to the daemon, which stops its own workers
    assert one(unit, "User") == one(unit, "Group") == "dedupd"
    for key in ("RuntimeDirectory", "StateDirectory", "ConfigurationDirectory"):
        assert one(unit, key) == "dedupd"
    assert one(unit, "WantedBy", "Install") == "multi-user.target"


def test_unit_is_hardened(unit: dict[str, dict[str, list[str]]]) -> None:
    expected = {
        "ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes", "RestrictAddressFamilies": "AF_UNIX", "LockPersonality": "yes",
        "SystemCallFilter": "@system-service", "RestrictSUIDSGID": "yes", "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert one(unit, key) == value, key
    # W^X breaks PyTorch (see test_memory_deny_write_execute_guidance); it must stay opt-in
    assert "MemoryDenyWriteExecute" not in unit["Service"]
    assert "ProcSubset" not in unit["Service"]  # numpy/torch read /proc/cpuinfo
    text = UNIT.read_text()
    assert "ProtectHome=read-only" in text, "the /home drop-in must be documented in the unit"
    assert re.search(r"^#MemoryMax=\S+", text, re.MULTILINE), "MemoryMax guidance (commented example) missing"


def test_unit_matches_configs_and_snippets(unit: dict[str, dict[str, list[str]]]) -> None:
    """Paths agree across the unit, config/systemd.yaml, config/nas.yaml, sysusers and tmpfiles."""
    systemd_cfg = yaml.safe_load((REPO / "config" / "systemd.yaml").read_text())
    nas_cfg = yaml.safe_load((REPO / "config" / "nas.yaml").read_text())
    run_dir = "/run/" + one(unit, "RuntimeDirectory")
    state_dir = "/var/lib/" + one(unit, "StateDirectory")
    config_path = shlex.split(one(unit, "ExecStart"))[-1]
    assert config_path == f"/etc/{one(unit, 'ConfigurationDirectory')}/config.yaml"
    for cfg in (systemd_cfg, nas_cfg):
        assert cfg["socket_path"] == f"{run_dir}/dedupd.sock"
        assert cfg["store_dir"].startswith(state_dir + "/") and cfg["report_dir"].startswith(state_dir + "/")
        assert cfg["socket_group"] == one(unit, "Group")
    # the unit alone writes no photos (policy: report); the quarantine drop-in makes the NAS
    # (quarantine) example's roots and quarantine folder writable under ProtectSystem=strict, as ONE
    # folder: systemd mounts each listed path apart, and a rename between two mounts fails (EXDEV)
    assert "ReadWritePaths" not in unit["Service"], "photo roots are writable only with the quarantine drop-in"
    dropin = parse_unit(DROPIN.read_text())
    assert set(dropin) == {"Service"} and set(dropin["Service"]) == {"ReadWritePaths"}
    writable = {p.lstrip("-") for v in dropin["Service"]["ReadWritePaths"] for p in v.split()}
    nas_roots = [r["path"] if isinstance(r, dict) else r for r in nas_cfg["roots"]]
    (parent,) = writable
    assert all(p.startswith(parent.rstrip("/") + "/") for p in (*nas_roots, nas_cfg["quarantine_dir"])), writable
    assert systemd_cfg["policy"] == "report" and nas_cfg["policy"] == "quarantine"
    for text in (DROPIN.read_text(), (REPO / "config" / "nas.yaml").read_text(), DEPLOY_DOC.read_text()):
        assert "/etc/systemd/system/dedupd.service.d/quarantine.conf" in text
    # sysusers creates the unit's user; tmpfiles creates the quarantine folder and unit directories
    def entries(path: Path) -> list[list[str]]:
        return [line.split() for line in path.read_text().splitlines() if line and not line.startswith("#")]

    sysusers = entries(SYSUSERS)
    assert ["u", one(unit, "User")] == sysusers[0][:2]
    tmpfiles = {fields[1] for fields in entries(TMPFILES)}
    assert {run_dir, state_dir, nas_cfg["quarantine_dir"]} <= tmpfiles


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="systemd-tmpfiles --create chowns: needs root (CI runs as root)")
def test_sysusers_and_tmpfiles_apply_to_a_scratch_root(tmp_path: Path) -> None:
    sysusers, tmpfiles = tool("systemd-sysusers"), tool("systemd-tmpfiles")
    root = tmp_path / "root"
    (root / "etc" / "sysusers.d").mkdir(parents=True)
    (root / "etc" / "tmpfiles.d").mkdir(parents=True)
    shutil.copy(SYSUSERS, root / "etc" / "sysusers.d" / "dedupd.conf")
    shutil.copy(TMPFILES, root / "etc" / "tmpfiles.d" / "dedupd.conf")
    for cmd in ([sysusers, f"--root={root}"], [tmpfiles, f"--root={root}", "--create"]):
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "ignoring" not in proc.stderr.lower(), proc.stderr
    passwd = dict(line.split(":", 1) for line in (root / "etc" / "passwd").read_text().splitlines())
    uid, gid = (int(x) for x in passwd["dedupd"].split(":")[1:3])
    assert uid < 1000 and passwd["dedupd"].endswith(":/var/lib/dedupd:/usr/sbin/nologin")
    for d in ("var/lib/dedupd", "run/dedupd", "srv/dedupd-quarantine"):
        st = (root / d).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (uid, gid, 0o750), d


# -- the daemon under a fake systemd ----------------------------------------------------------


class FakeSystemd:
    """The notify socket systemd gives a Type=notify service: a bound SOCK_DGRAM Unix socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def close(self) -> None:
        self.sock.close()

    def wait_for(self, key: str, value: str | None = None, timeout: float = 60.0,
                 proc: subprocess.Popen | None = None) -> dict[str, str]:
        """Receive datagrams until one has ``key`` (``=value``); returns that message."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None and not self._pending():
                break
            self.sock.settimeout(0.2)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.messages.append(fields)
            if key in fields and (value is None or fields[key] == value):
                return fields
        seen = [list(m) for m in self.messages]
        raise AssertionError(f"no {key}{'=' + value if value else ''} within {timeout} s; received {seen}")

    def _pending(self) -> bool:
        self.sock.settimeout(0)
        try:
            self.sock.recv(65536, socket.MSG_PEEK)
            return True
        except (BlockingIOError, TimeoutError):
            return False

    def received(self, key: str) -> int:
        return sum(key in m for m in self.messages)


def service_env(tmp_path: Path, notify_path: Path) -> dict[str, str]:
    """The environment systemd sets for this unit (minus what does not matter here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEDUPD_", "NOTIFY_", "WATCHDOG_"))}
    state, runtime = tmp_path / "state", tmp_path / "runtime"
    state.mkdir()
    runtime.mkdir()
    env.update({
        "NOTIFY_SOCKET": str(notify_path),
        "WATCHDOG_USEC": "400000",
        "STATE_DIRECTORY": str(state),
        "RUNTIME_DIRECTORY": str(runtime),
        "PYTHONUNBUFFERED": "1",
        "HOME": str(tmp_path / "home"),  # must not be used: the systemd directories win
    })
    return env


def test_daemon_speaks_the_notify_protocol(tmp_path: Path) -> None:
    from PIL import Image

    from dedupd.client import Client

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(photos / "a.png")
    Image.new("RGB", (64, 48), (200, 30, 30)).save(photos / "b.png")
    config = tmp_path / "config.yaml"
    # like config/systemd.yaml, but with the state and socket paths left to the systemd defaults
    config.write_text(textwrap.dedent(f"""\
        roots: [{photos}]
        settle_ms: 100
        log: {{format: json, level: info}}
    """))
    notify = FakeSystemd(tmp_path / "notify.sock")
    env = service_env(tmp_path, notify.path)
    proc = subprocess.Popen([sys.executable, "-m", "dedupd", "run", "--config", str(config)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        ready = notify.wait_for("READY", "1", timeout=90, proc=proc)
        # READY=1 means the socket answers, at the path systemd's RuntimeDirectory= gives
        sock = Path(env["RUNTIME_DIRECTORY"]) / "dedupd.sock"
        assert sock.is_socket()
        assert Client(str(sock), timeout=10).get("/v1/status")["pid"] == proc.pid
        assert (Path(env["STATE_DIRECTORY"]) / "store").is_dir()
        assert not (tmp_path / "home").exists()
        if "STATUS" not in ready:
            notify.wait_for("STATUS", timeout=10, proc=proc)
        # WATCHDOG_USEC=400000: a ping at least every 0.2 s
        t0 = time.monotonic()
        notify.wait_for("WATCHDOG", "1", timeout=5, proc=proc)
        notify.wait_for("WATCHDOG", "1", timeout=5, proc=proc)
        assert time.monotonic() - t0 < 2.0
        status = notify.wait_for("STATUS", timeout=10, proc=proc)["STATUS"]
        assert re.match(r"\w+: \d+ files, \d+ groups, \d+ queued", status), status

        proc.send_signal(signal.SIGHUP)  # ExecReload=/bin/kill -HUP $MAINPID
        notify.wait_for("RELOADING", "1", timeout=30, proc=proc)
        notify.wait_for("READY", "1", timeout=30, proc=proc)

        proc.send_signal(signal.SIGTERM)  # systemctl stop, KillMode=mixed: the main process only
        notify.wait_for("STOPPING", "1", timeout=30, proc=proc)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        notify.close()
    log = out.decode(errors="replace")
    assert proc.returncode == 0, log
    assert "configuration reloaded" in log and "dedupd stopped" in log, log


# -- MemoryDenyWriteExecute guidance ---------------------------------------------------------

_MDWE_PROBE = textwrap.dedent("""\
    import ctypes, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:   # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3+)
        sys.exit(77)
    if sys.argv[1] == "hash":
        import os, tempfile
        from PIL import Image
        from dedupd.methods import DHash, PHash, WHash
        d = tempfile.mkdtemp()
        Image.new("RGB", (64, 64), (10, 20, 30)).save(os.path.join(d, "a.png"))
        for m in (PHash(), DHash(), WHash()):
            m.encode_images(d)
        print("ok")
    else:
        import torch
        from dedupd.cnn_models import efficientnet_lite
        with torch.inference_mode():
            efficientnet_lite.build()(torch.zeros(1, 3, 224, 224))
        print("ok")
""")


def _under_mdwe(what: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MDWE_PROBE, what], check=False, capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def test_memory_deny_write_execute_guidance() -> None:
    """The unit says: W^X is fine for hashing, breaks PyTorch. Checked with the kernel's PR_SET_MDWE.

    PR_SET_MDWE (Linux 6.3+) is the per-process form of MemoryDenyWriteExecute= (systemd 256+ uses it).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "prctl"):
        pytest.skip("no prctl")
    hashing = _under_mdwe("hash")
    if hashing.returncode == 77:
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    assert hashing.returncode == 0 and hashing.stdout.strip() == "ok", hashing.stderr
    try:
        import torch  # noqa: F401

        from dedupd.cnn_models import efficientnet_lite

        efficientnet_lite.packaged_weights_path()
    except (ImportError, ModelUnavailableError):  # no torch or no offline weights: hashing was checked
        return
    cnn = _under_mdwe("cnn")
    assert cnn.returncode != 0, (
        "PyTorch now runs under MemoryDenyWriteExecute: "
        "update the note in systemd/dedupd.service and docs/deploy.md"
    )
    # it fails for the documented reason: oneDNN cannot map its generated code executable
    assert "could not create a primitive" in cnn.stderr or cnn.returncode < 0, cnn.stderr[-2000:]
