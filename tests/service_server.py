"""A real `deepscreen serve` process on a loopback port, for the service tests (tests/test_service*.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

PG_URL = os.environ.get("DEEPSCREEN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CLI = [sys.executable, "-c", "from deepscreen.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_key(data_dir: Path, role: str, database_url: str | None = None, name: str = "") -> str:
    args = CLI + ["keys", "create", "--role", role, "--data-dir", str(data_dir), "--name", name or f"test {role}"]
    if database_url:
        args += ["--database-url", database_url]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return out.stdout.strip()


class Server:
    def __init__(self, data_dir: Path, *args: str, database_url: str | None = None, env: dict | None = None):
        self.data_dir = data_dir
        self.args = list(args)
        self.database_url = database_url
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> "Server":
        args = CLI + ["serve", "--data-dir", str(self.data_dir), "--port", str(self.port), *self.args]
        if self.database_url:
            args += ["--database-url", self.database_url]
        self.log = open(self.data_dir.parent / f"server-{self.port}-{int(time.time())}.log", "ab")
        self.proc = subprocess.Popen(args, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log: {self.log.name}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready after {timeout} s; log: {self.log.name}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def client(server: Server, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def wait_done(c: httpx.Client, scan_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = c.get(f"/v1/scans/{scan_id}").json()
        if body["status"] in ("done", "error"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"scan {scan_id} not finished after {timeout} s: {body}")


def pg_database() -> tuple[str, callable] | None:
    """A fresh PostgreSQL database on the machine's server (dropped by the returned function), or None."""
    try:
        import psycopg

        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except Exception:
        return None
    name = f"deepscreen_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_URL.rsplit("/", 1)[0] + "/" + name

    def drop():
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    return url, drop


def face_pair(out: Path) -> dict[str, Path]:
    """A held-out person's photo and its self-blended forgery (made here, by the generator side), as JPEGs."""
    import numpy as np
    from PIL import Image

    from conftest import LFW_DIR
    from deepscreen.faces.detect import FaceAnalyzer
    from deepscreen.synthesis.sbi import self_blend
    from deepscreen.training.data import split_of

    person = sorted(p.name for p in LFW_DIR.iterdir() if p.is_dir() and split_of(p.name) == "test")[0]
    face = np.asarray(Image.open(LFW_DIR / person / f"{person}_0001.jpg").convert("RGB"))
    lms = FaceAnalyzer()(face)[0].landmarks
    fake = self_blend(face, lms, np.random.default_rng(7), family="face", ratio=1.0).image
    Image.fromarray(face).save(out / "real.jpg", quality=95)
    Image.fromarray(fake).save(out / "fake.jpg", quality=95)
    return {"real": out / "real.jpg", "fake": out / "fake.jpg"}


def review_login(c: httpx.Client, key: str) -> httpx.Response:
    """Log in to the review page as a browser does: fetch the form (its token and cookie), post the key."""
    import re

    page = c.get("/review/login").text
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    return c.post("/review/login", data={"key": key, "csrf": token})
