"""Open a report in headless Chromium: console errors, images that did not load, a screenshot.

A minimal DevTools-protocol client over ``--remote-debugging-pipe`` (JSON
messages ending in a NUL byte on file descriptors 3 and 4): no Selenium, no
Playwright, no network port, nothing to install but Chromium itself.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) executable on the PATH, or ``None``."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Pipe:
    """The DevTools pipe of one Chromium process."""

    def __init__(self, binary, profile):
        to_child = os.pipe()
        from_child = os.pipe()
        # Far above 3 and 4, so that placing them there cannot overwrite one another.
        self.fds = [fcntl.fcntl(fd, fcntl.F_DUPFD, 20) for fd in (*to_child, *from_child)]
        for fd in (*to_child, *from_child):
            os.close(fd)
        child_read, self.write_fd, self.read_fd, child_write = self.fds

        def place():
            os.dup2(child_read, 3)
            os.dup2(child_write, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=place, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(child_read)
        os.close(child_write)
        self.buffer, self.next_id, self.events = b"", 0, []

    def send(self, method, params=None, session=None, timeout_s=60.0) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self.receive(timeout_s)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def receive(self, timeout_s) -> dict:
        deadline = time.monotonic() + timeout_s
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        msg, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(msg)

    def wait_event(self, method, timeout_s=60.0) -> dict:
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            e = self.receive(timeout_s)
            self.events.append(e)
            if e.get("method") == method:
                return e

    def close(self):
        try:
            self.send("Browser.close", timeout_s=5)
        except Exception:  # noqa: BLE001 - killed below anyway
            pass
        for fd in (self.write_fd, self.read_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def check_page(html_path, screenshot=None, width=1400, height=1800, binary=None,
               timeout_s=60.0) -> dict:
    """Load ``html_path`` in headless Chromium and report what went wrong.

    Returns
    -------
    dict
        ``errors``: console errors, uncaught exceptions and error log entries
        (text); ``images``: ``[alt, loaded, natural width]`` per ``<img>``;
        ``title``; ``screenshot``: the PNG path when one was asked for.
    """
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError(f"no Chromium found (looked for {', '.join(BROWSERS)})")
    with tempfile.TemporaryDirectory(prefix="batchlib-chromium-") as profile:
        pipe = _Pipe(binary, profile)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout_s=timeout_s)
            session = pipe.send("Target.attachToTarget", {"targetId": target["targetId"],
                                                          "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                      session=session)
            pipe.send("Page.navigate", {"url": Path(html_path).resolve().as_uri()}, session=session)
            pipe.wait_event("Page.loadEventFired", timeout_s)
            value = pipe.send("Runtime.evaluate", {
                "expression": "JSON.stringify({title: document.title, images: Array.from(document.images)"
                              ".map(i => [i.alt, i.complete && i.naturalWidth > 0, i.naturalWidth])})",
                "returnByValue": True}, session=session)["result"]["value"]
            page = json.loads(value)
            if screenshot is not None:
                shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session)
                Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
            time.sleep(0.2)  # late console messages
            pipe.send("Runtime.evaluate", {"expression": "1"}, session=session)  # flush events
        finally:
            pipe.close()
    errors = []
    for e in pipe.events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            errors.append(p.get("exceptionDetails", {}).get("text", "exception"))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append(p["entry"].get("text", ""))
    return {"errors": errors, "images": page["images"], "title": page["title"],
            "screenshot": str(screenshot) if screenshot is not None else None}
