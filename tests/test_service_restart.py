"""Durability of the job table, on both stores: `kill -9` of the server in the middle of a scan, then a restart on
the same store. The job in hand is scanned again and stored once; nothing accepted is lost. The PostgreSQL run
uses the server on 127.0.0.1:5432 (a fresh database, dropped after) and is skipped only when none is reachable."""

from __future__ import annotations

import subprocess
import time

import pytest
from PIL import Image
from sqlalchemy import create_engine, select

from media_factory import gradient, write_video
from service_server import Server, client, make_key, pg_database, wait_done


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield None, f"sqlite:///{tmp_path / 'data' / 'deepscreen.db'}"
        return
    made = pg_database()
    if made is None:
        pytest.skip("no PostgreSQL server reachable on 127.0.0.1:5432 (set DEEPSCREEN_TEST_PG to another)")
    url, drop = made
    yield url, url.replace("postgresql://", "postgresql+psycopg://")
    drop()


def _long_video(path, face):
    """8 s at 20 fps with a face in every frame: with all_frames on, a scan long enough to be killed in."""
    frames = []
    for i in range(160):
        frame = gradient(240, 320, shift=i)
        frame[45:195, 8 + i // 2:158 + i // 2] = face
        frames.append(frame)
    return write_video(path, frames, fps=20)


def test_kill_9_mid_scan_then_restart(store, tmp_path, lfw_face_path):
    import numpy as np

    database_url, sa_url = store
    data = tmp_path / "data"
    key = make_key(data, "admin", database_url)
    face = np.asarray(Image.open(lfw_face_path).convert("RGB"))
    video = _long_video(tmp_path / "long.mp4", face)
    env = {"DEEPSCREEN_ALL_FRAMES": "true"}
    server = Server(data, "--workers", "1", database_url=database_url, env=env).start()
    try:
        c = client(server, key)
        vid = c.post("/v1/scans", files={"file": ("long.mp4", video.read_bytes())}).json()["id"]
        photos = []
        for i in range(4):  # queued behind the video: accepted, not yet scanned when the server dies
            buf = lfw_face_path.read_bytes() + bytes([i]) * 5
            r = c.post("/v1/scans", files={"file": (f"p{i}.jpg", buf)})
            assert r.status_code == 202
            photos.append(r.json()["id"])
        deadline = time.monotonic() + 60
        while c.get(f"/v1/scans/{vid}").json()["status"] != "running":
            assert time.monotonic() < deadline, "the video was never picked up"
            time.sleep(0.05)
        time.sleep(0.3)  # into the scan (seconds long); the check below makes sure it still runs
        assert c.get(f"/v1/scans/{vid}").json()["status"] == "running"
        killed_pid = server.proc.pid
        server.kill9()
    finally:
        server.stop()
    engine = create_engine(sa_url)
    from deepscreen.service.store import scans, servers

    with engine.connect() as conn:
        sid = conn.execute(select(servers.c.id).where(servers.c.pid == killed_pid)).scalar()
        assert conn.execute(select(scans.c.status).where(scans.c.id == vid)).scalar() == "running"
    time.sleep(1.0)
    left = subprocess.run(["pgrep", "-f", f"--server-id {sid}"], capture_output=True, text=True).stdout
    assert left.strip() == "", "workers must die with their server (PR_SET_PDEATHSIG)"

    # Restarted with two workers, so the re-queued jobs are also claimed concurrently (SKIP LOCKED on PostgreSQL).
    server = Server(data, "--workers", "2", database_url=database_url, env=env).start()
    try:
        c = client(server, key)
        results = [wait_done(c, i, timeout=120) for i in [vid] + photos]
        assert [r["status"] for r in results] == ["done"] * 5
        assert results[0]["route"] == "pass" and results[0]["verdict"]["media"]["frames_analysed"] == 160
        with engine.connect() as conn:
            rows = conn.execute(select(scans.c.id, scans.c.attempts, scans.c.claim)).all()
        assert len(rows) == 5, "no upload lost, none stored twice"
        attempts = {r.id: r.attempts for r in rows}
        assert attempts[vid] == 2 and all(attempts[p] == 1 for p in photos)
        assert all(r.claim is None for r in rows)
        again = c.post("/v1/scans", files={"file": ("again.jpg", lfw_face_path.read_bytes() + bytes([0]) * 5)})
        assert wait_done(c, again.json()["id"])["cached_from"] == photos[0]  # same bytes, same models: reused
    finally:
        server.stop()
        engine.dispose()
