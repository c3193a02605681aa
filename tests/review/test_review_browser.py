"""``dedupd review`` in a real browser: a real daemon subprocess on copies of corpus photos, the review
server as the user starts it, headless Chromium driven by Selenium. Every click is checked on the disk,
in the daemon's store (LMDB, read-only beside the daemon) and on the socket."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.browser import webdriver
from tests.daemon.helpers import REPO, DaemonProcess, sha256

EVIL = "<img src=x onerror=window.__xss=1>.jpg"
#: group name → (kept file, its duplicate, how the duplicate is made)
GROUPS = {"a": ("a.jpg", "a_copy.jpg", "copy"), "b": ("b.jpg", "b_half.jpg", "half"),
          "c": ("c.jpg", EVIL, "copy"), "d": ("d.jpg", "d_half.jpg", "half"), "e": ("e.jpg", "e_half.jpg", "half")}


class ReviewProcess:
    """``dedupd review --no-browser`` as a subprocess; its printed address carries the token."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUPD_")}
        env["PYTHONPATH"] = str(REPO)
        self.proc = subprocess.Popen([sys.executable, "-m", "dedupd", "review", "--no-browser", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        assert self.proc.stdout is not None
        out, deadline = b"", time.monotonic() + 30
        while b"open http" not in out or not out.endswith(b"\n"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise AssertionError(f"dedupd review did not print its address: {out.decode()!r}")
            if select.select([self.proc.stdout], [], [], 0.2)[0]:
                out += os.read(self.proc.stdout.fileno(), 4096)
        self.output = out.decode()
        self.url = next(w for w in self.output.split() if w.startswith("http://127.0.0.1:"))
        self.base = self.url.split("/?")[0]
        self.token = self.url.split("token=")[1]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its thumbnail workers, if any outlived it
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def http(review: ReviewProcess, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(review.base + path, data=data, method=method,
                                 headers={**({"Content-Type": "application/json"} if data else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


@pytest.fixture(scope="module")
def env(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("review")
    photos, quarantine = base / "photos", base / "quarantine"
    photos.mkdir()
    bases = sorted((corpus_dir / "base").glob("b*.jpg"))[20:25]
    for (keep, dup, how), src in zip(GROUPS.values(), bases):
        shutil.copyfile(src, photos / keep)
        if how == "copy":
            shutil.copyfile(src, photos / dup)
        else:
            with Image.open(src) as im:
                im.resize((im.width // 2, im.height // 2)).save(photos / dup, quality=90)
        os.utime(photos / keep, (1_600_000_000, 1_600_000_000))  # the original is the older copy
    daemon = DaemonProcess(base, [photos], quarantine_dir=str(quarantine), policy="report")
    profile = base / "chromium-profile"
    review = driver = None
    try:
        daemon.start()
        daemon.wait_until(lambda: daemon.api("GET", "/v1/groups")[1]["total"] == len(GROUPS), 60, "five groups")
        review = ReviewProcess("--socket", daemon.socket_path)
        driver = webdriver(profile)
        yield {"daemon": daemon, "review": review, "driver": driver, "photos": photos, "quarantine": quarantine,
               "base": base, "sums": {p.name: sha256(p) for p in photos.iterdir()}}
    finally:
        if driver is not None:
            driver.quit()
        if review is not None:
            review.close()
        daemon.close()


# -- page helpers --------------------------------------------------------------------------------------

def wait(driver: Any, js: str, *args: Any, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(js, *args)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or js}; message: "
                                 + str(driver.execute_script("return document.getElementById('msg').textContent")))
        time.sleep(0.1)


FIND = "return [...document.querySelectorAll('.m')].find(e => e.getAttribute('data-path') === arguments[0]) || null;"
STATE = ("var m=[...document.querySelectorAll('.m')].find(e => e.getAttribute('data-path') === arguments[0]);"
         "return !document.body.hasAttribute('data-busy') && m && m.getAttribute('data-state') === arguments[1];")


def open_page(e: dict[str, Any]) -> Any:
    driver = e["driver"]
    driver.get(e["review"].url)
    wait(driver, "return document.querySelectorAll('.card').length > 0", what="the groups")
    return driver


def member(driver: Any, path: Path) -> Any:
    found = driver.execute_script(FIND, str(path))
    assert found is not None, f"{path} is not shown on the page"
    return found


def click(driver: Any, path: Path, css: str) -> None:
    from selenium.webdriver.common.by import By

    target = member(driver, path).find_element(By.CSS_SELECTOR, css)
    # centre it first: scrolled to the top edge it would sit under the sticky header
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
    target.click()


def in_store(e: dict[str, Any], path: Path) -> tuple[bool, list[str]]:
    """(is ``path`` indexed, states of its quarantine entries), read from the daemon's LMDB store."""
    from dedupd.daemon.store import Store

    store = Store.open(str(e["daemon"].dir / "store"), readonly=True, lock=False)
    try:
        return (store.get_file(str(path)) is not None,
                [q.state for q in store.iter_quarantine() if q.origin == str(path)])
    finally:
        store.close()


def route_exists(e: dict[str, Any], route: str) -> bool:
    """A route the daemon lacks answers 404 (a POST-only one answers GET with 405, a listing 200)."""
    return e["daemon"].api("GET", route)[0] != 404


def forwarded_to_missing_route(e: dict[str, Any], action: str, body: dict[str, Any], route: str) -> None:
    """The review server sends the page's request to the daemon's ``route``: a daemon without it says 404."""
    status, res = http(e["review"], "POST", f"/api/{action}", body, {"X-Dedupd-Token": e["review"].token})
    assert status == 404 and f"no endpoint {route}" in res["detail"], res


def groups_of(e: dict[str, Any]) -> list[dict[str, Any]]:
    return e["daemon"].api("GET", "/v1/groups")[1]["groups"]


# -- tests ---------------------------------------------------------------------------------------------

def test_page_shows_groups_escaped_and_thumbnails(env):
    driver = open_page(env)
    cards = driver.execute_script("return [...document.querySelectorAll('.card')].map(c => c.getAttribute('data-group'))")
    assert sorted(cards) == sorted(g["id"] for g in groups_of(env))
    evil = env["photos"] / EVIL
    m = member(driver, evil)
    assert driver.execute_script("return arguments[0].querySelector('.name').textContent", m) == EVIL
    assert driver.execute_script("return window.__xss === undefined && !document.querySelector('img[src=\"x\"]')")
    # every thumbnail came from the review server and decoded (naturalWidth > 0)
    wait(driver, "return [...document.querySelectorAll('.m img')].every(i => i.complete && i.naturalWidth > 0)",
         what="thumbnails")
    assert driver.execute_script("return document.querySelectorAll('.m img').length") == 2 * len(GROUPS)
    # sorted by space freed: the largest freeable duplicate first
    freed = sorted(groups_of(env), key=lambda g: -sum(d["bytes"] for d in g["duplicates"]))[0]["id"]
    assert cards[0] == freed
    assert driver.execute_script("return document.getElementById('source').textContent").startswith("live:")


def test_quarantine_then_restore_one(env):
    driver = open_page(env)
    victim, keeper = env["photos"] / "b_half.jpg", env["photos"] / "b.jpg"
    click(driver, victim, "button.act-quarantine")
    wait(driver, STATE, str(victim), "quarantined", what="b_half.jpg quarantined")
    moved = env["quarantine"] / "photos" / "b_half.jpg"
    assert not victim.exists() and moved.is_file() and keeper.is_file()
    assert sha256(moved) == env["sums"]["b_half.jpg"]
    assert in_store(env, victim) == (False, ["moved"])
    assert env["daemon"].status()["in_quarantine"] == 1

    click(driver, victim, "button.act-restore")
    wait(driver, STATE, str(victim), "restored", timeout=60, what="b_half.jpg restored and indexed again")
    assert victim.is_file() and not moved.exists() and sha256(victim) == env["sums"]["b_half.jpg"]
    env["daemon"].wait_until(lambda: in_store(env, victim) == (True, ["restored"]), 30, "re-indexed after restore")
    assert driver.execute_script("return document.getElementById('msg').textContent") == "restore: 1 done"


def test_quarantine_selected_then_restore_selected(env):
    driver = open_page(env)
    chosen = [env["photos"] / "a_copy.jpg", env["photos"] / EVIL]
    for p in chosen:
        click(driver, p, "input.select")
    assert driver.execute_script("return document.getElementById('quarantine-selected').textContent") \
        == "Quarantine selected (2)"
    driver.execute_script("document.getElementById('quarantine-selected').click()")
    for p in chosen:
        wait(driver, STATE, str(p), "quarantined", what=f"{p.name} quarantined")
        assert not p.exists() and sha256(env["quarantine"] / "photos" / p.name) == env["sums"][p.name]
        assert in_store(env, p) == (False, ["moved"])
    assert all((env["photos"] / k).is_file() for k in ("a.jpg", "c.jpg")), "kept copies stay"

    for p in chosen:
        click(driver, p, "input.select")
    driver.execute_script("document.getElementById('restore-selected').click()")
    for p in chosen:
        wait(driver, STATE, str(p), "restored", timeout=60, what=f"{p.name} restored")
        assert sha256(p) == env["sums"][p.name] and not (env["quarantine"] / "photos" / p.name).exists()
    for p in chosen:
        env["daemon"].wait_until(lambda p=p: in_store(env, p) == (True, ["restored"]), 30, f"{p.name} re-indexed")


def test_refusals_are_shown_and_change_nothing(env):
    """A kept copy cannot be quarantined (409-free: one refusal per file, shown on the page)."""
    driver = open_page(env)
    keeper = env["photos"] / "d.jpg"
    status, res = http(env["review"], "POST", "/api/quarantine", {"paths": [str(keeper)]},
                       {"X-Dedupd-Token": env["review"].token})
    assert status == 200 and res["quarantined"] == 0 and "kept copy" in res["results"][0]["detail"]
    assert keeper.is_file() and in_store(env, keeper) == (True, [])
    assert member(driver, keeper).get_attribute("data-state") == "kept"


def test_keep_this_one(env):
    driver = open_page(env)
    dup, old = env["photos"] / "d_half.jpg", env["photos"] / "d.jpg"
    button = driver.execute_script("return arguments[0].querySelector('button.act-keep')", member(driver, dup))
    if not route_exists(env, "/v1/keep"):
        assert not button.is_enabled() and "no keep endpoint" in button.get_attribute("title")
        forwarded_to_missing_route(env, "keep", {"path": str(dup)}, "/v1/keep")
        pytest.skip("the daemon has no POST /v1/keep on this branch yet (built on wt-act): the button is shown "
                    "disabled with the reason (checked); enable this test after the merge")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    wait(driver, STATE, str(dup), "kept", what="d_half.jpg kept")
    group = next(g for g in groups_of(env) if str(old) in {g["keep"]["path"], *(d["path"] for d in g["duplicates"])})
    assert group["keep"]["path"] == str(dup), "the smaller copy is kept because the user said so"
    assert member(driver, old).get_attribute("data-state") == "duplicate"
    assert dup.is_file() and old.is_file() and sha256(dup) == env["sums"]["d_half.jpg"]


def test_not_a_duplicate(env):
    driver = open_page(env)
    dup, keeper = env["photos"] / "e_half.jpg", env["photos"] / "e.jpg"
    button = driver.execute_script("return arguments[0].querySelector('button.act-ignore')", member(driver, dup))
    if not route_exists(env, "/v1/ignore"):
        assert not button.is_enabled() and "no ignore endpoint" in button.get_attribute("title")
        forwarded_to_missing_route(env, "ignore", {"paths": [str(dup), str(keeper)]}, "/v1/ignore")
        pytest.skip("the daemon has no POST /v1/ignore on this branch yet (built on wt-act): the button is shown "
                    "disabled with the reason (checked); enable this test after the merge")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    wait(driver, "return !document.body.hasAttribute('data-busy') && !(" + FIND[len("return "):-1] + ")", str(dup),
         what="e_half.jpg's group gone from the page")
    together = [g for g in groups_of(env)
                if {str(dup), str(keeper)} <= {g["keep"]["path"], *(d["path"] for d in g["duplicates"])}]
    assert together == [], "files marked distinct are no longer one group"
    assert dup.is_file() and keeper.is_file()


def test_state_changes_need_the_token_header(env):
    review, victim = env["review"], env["photos"] / "a_copy.jpg"
    cookie = {"Cookie": f"dedupd_review={review.token}"}
    body = {"paths": [str(victim)]}
    assert http(review, "POST", "/api/quarantine", body, cookie)[0] == 403, "a cookie is not enough"
    assert http(review, "POST", f"/api/quarantine?token={review.token}", body)[0] == 403, "nor the query"
    assert http(review, "POST", "/api/quarantine", body, {"X-Dedupd-Token": "x" * 43})[0] == 403
    assert http(review, "POST", "/api/quarantine", body,
                {"X-Dedupd-Token": review.token, "Host": "attacker.example:80"})[0] == 403, "DNS rebinding"
    assert http(review, "GET", "/api/state")[0] == 403
    assert http(review, "GET", "/?token=wrong")[0] == 403
    assert http(review, "GET", "/original?path=/etc/passwd", headers=cookie)[0] == 404, "only shown members"
    assert victim.is_file() and in_store(env, victim)[0]
    # a page of another origin cannot make the browser act (no token; the cookie is SameSite=Strict)
    driver = env["driver"]
    attacker = env["base"] / "attacker.html"
    attacker.write_text(f"""<script>fetch("{review.base}/api/quarantine", {{method: "POST", credentials: "include",
      headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({json.dumps(body)})}})
      .then(r => document.title = "status " + r.status).catch(e => document.title = "blocked");</script>""")
    driver.get(attacker.as_uri())
    wait(driver, "return document.title.length > 0", what="the attacker page's request")
    time.sleep(0.5)
    assert victim.is_file() and in_store(env, victim)[0]
    headers = {"X-Dedupd-Token": review.token}
    status, state = http(review, "GET", "/api/state", headers=headers)
    assert status == 200 and next(f for g in state["groups"] for f in g["duplicates"]
                                  if f["path"] == str(victim))["state"] != "quarantined"


def test_read_only_without_daemon(env):
    env["daemon"].stop()
    review = ReviewProcess("--config", str(env["daemon"].config_path))
    try:
        assert "read-only" in review.output
        driver = env["driver"]
        driver.get(review.url)
        wait(driver, "return document.querySelectorAll('.card').length > 0", what="the groups")
        assert "read-only" in driver.execute_script("return document.getElementById('summary').textContent")
        enabled = driver.execute_script("return [...document.querySelectorAll('.m button')].filter(b => !b.disabled).length")
        assert enabled == 0, "no action without a daemon"
        status, res = http(review, "POST", "/api/quarantine", {"paths": [str(env["photos"] / "a_copy.jpg")]},
                           {"X-Dedupd-Token": review.token})
        assert status == 409 and "read-only" in res["error"]
        assert (env["photos"] / "a_copy.jpg").is_file()
    finally:
        review.close()
