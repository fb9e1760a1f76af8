"""The prescreening service under load, on loopback, as a table per store (issue #34's bar).

  .venv/bin/python benchmarks/bench_service.py [--store sqlite|postgresql|both] [--uploads 500] [--concurrency 16]

For each store, a real `deepscreen serve` process (default worker count), fresh data:
1. Latency when idle: 20 photos one at a time, time from sending to seeing the verdict (polling). Then
   throughput: `--uploads` different small photos (LFW faces, ~150x150 JPEG) posted at `--concurrency` at once:
   uploads accepted per second, p50/p95 time to verdict (from the moment the client starts sending to the
   server's finished_at), verdicts per second, errors (goal 0).
2. Crash: uploads at the same concurrency, `kill -9` of the server once `--kill-after` have been accepted, a
   restart on the same store, then the client re-sends what got no answer, with the same Idempotency-Key
   (one per photo), as a client of this API should. Counted from the store: every
   accepted upload has a result (goal: accepted = stored), no upload has two (goal 0), jobs re-scanned after the
   restart. PostgreSQL: a fresh database on 127.0.0.1:5432 (dropped after); skipped if none is reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from deepscreen.config import SHARED_DIR  # noqa: E402
from deepscreen.service.store import scans  # noqa: E402

CLI = [sys.executable, "-c", "from deepscreen.cli import main; main()"]
IDLE = 20  # photos sent one at a time before the burst
WORKERS = [None]  # --workers, for every server this run starts
PG_URL = os.environ.get("DEEPSCREEN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def photos(n: int) -> list[bytes]:
    files = sorted((SHARED_DIR / "data/faces/lfw").rglob("*.jpg"))[:n]
    if len(files) < n:
        sys.exit(f"need {n} LFW photos under {SHARED_DIR / 'data/faces/lfw'}, found {len(files)}")
    return [f.read_bytes() for f in files]


class Server:
    def __init__(self, data: Path, database_url: str | None):
        self.data, self.database_url = data, database_url
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def key(self) -> str:
        args = CLI + ["keys", "create", "--role", "submit", "--data-dir", str(self.data)]
        if self.database_url:
            args += ["--database-url", self.database_url]
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()

    def start(self) -> float:
        args = CLI + ["serve", "--data-dir", str(self.data), "--port", str(self.port)]
        if WORKERS[0]:
            args += ["--workers", str(WORKERS[0])]
        if self.database_url:
            args += ["--database-url", self.database_url]
        t = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=open(self.data.parent / "server.log", "ab"),
                                     stderr=subprocess.STDOUT)
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"server exited; see {self.data.parent / 'server.log'}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - t
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


async def post_all(url: str, key: str, bodies: list[tuple[int, bytes]], concurrency: int, stop_after=None,
                   on_accept=None) -> tuple[dict[int, tuple[str, float]], list[int], list[str]]:
    """Post each (index, bytes); returns ({index: (id, t_start)}, indexes with no answer, error strings)."""
    accepted: dict[int, tuple[str, float]] = {}
    unanswered: list[int] = []
    errors: list[str] = []
    queue = list(bodies)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60,
                                 limits=limits) as client:
        async def one():
            while queue:
                i, data = queue.pop(0)
                t = time.time()
                try:
                    # One Idempotency-Key per photo: a re-send after a cut connection finds the first scan.
                    r = await client.post("/v1/scans", files={"file": (f"{i}.jpg", data, "image/jpeg")},
                                          headers={"Idempotency-Key": f"photo-{i}"})
                except httpx.TransportError:
                    unanswered.append(i)
                    continue
                if r.status_code == 202:
                    accepted[i] = (r.json()["id"], t)
                    if on_accept:
                        on_accept(len(accepted))
                else:
                    errors.append(f"{r.status_code} {r.text[:100]}")
        await asyncio.gather(*(one() for _ in range(concurrency)))
    return accepted, unanswered, errors


def wait_drained(engine, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if not conn.execute(select(func.count()).where(scans.c.status.in_(("queued", "running")))).scalar():
                return
        time.sleep(0.25)
    sys.exit("queue did not drain")


def sa_url(database_url: str | None, data: Path) -> str:
    if database_url:
        return database_url.replace("postgresql://", "postgresql+psycopg://")
    return f"sqlite:///{data / 'deepscreen.db'}"


def one_at_a_time(url: str, key: str, images: list[bytes]) -> list[float]:
    """Seconds from starting to send a photo to seeing its verdict, one photo at a time (idle server)."""
    out = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        for i, data in enumerate(images):
            t = time.perf_counter()
            sid = c.post("/v1/scans", files={"file": (f"idle{i}.jpg", data, "image/jpeg")}).json()["id"]
            while c.get(f"/v1/scans/{sid}").json()["status"] not in ("done", "error"):
                time.sleep(0.005)
            out.append(time.perf_counter() - t)
    return out


def throughput(tmp: Path, database_url, images: list[bytes], idle: list[bytes],
               concurrency: int) -> list[tuple[str, str]]:
    data = tmp / "throughput" / "data"
    data.mkdir(parents=True)
    server = Server(data, database_url)
    key = server.key()
    ready_s = server.start()
    try:
        single = one_at_a_time(server.url, key, idle)
        t0 = time.time()
        accepted, unanswered, errors = asyncio.run(post_all(server.url, key, list(enumerate(images)), concurrency))
        t_accepted = time.time() - t0
        engine = create_engine(sa_url(database_url, data))
        wait_drained(engine)
        with engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(select(scans.c.id, scans.c.status, scans.c.finished_at,
                                                         scans.c.scan_seconds))}
        engine.dispose()
    finally:
        server.stop()
    ttv = sorted(rows[sid].finished_at - t for sid, t in accepted.values())
    rows = {k: r for k, r in rows.items() if k in {sid for sid, _ in accepted.values()}}
    failed = [sid for sid, _ in accepted.values() if rows[sid].status != "done"]
    last = max(r.finished_at for r in rows.values())
    scan_s = statistics.median(r.scan_seconds for r in rows.values() if r.scan_seconds)
    return [
        ("server start to ready (models loaded)", f"{ready_s:.1f} s"),
        (f"one photo at a time: time to verdict p50 (n={len(single)})", f"{1000 * statistics.median(single):.0f} ms"),
        ("uploads accepted (202)", f"{len(accepted)} / {len(images)}"),
        ("uploads/s (all accepted)", f"{len(accepted) / t_accepted:.1f}"),
        ("verdicts/s (first upload to last verdict)", f"{len(rows) / (last - t0):.1f}"),
        ("time to verdict p50", f"{statistics.median(ttv):.2f} s"),
        ("time to verdict p95", f"{ttv[int(0.95 * (len(ttv) - 1))]:.2f} s"),
        ("scan time per photo p50 (in the worker)", f"{1000 * scan_s:.0f} ms"),
        ("errors (HTTP, transport, scans not done; goal 0)", f"{len(errors) + len(unanswered) + len(failed)}"),
    ]


def crash(tmp: Path, database_url, images: list[bytes], concurrency: int, kill_after: int) -> list[tuple[str, str]]:
    data = tmp / "crash" / "data"
    data.mkdir(parents=True)
    server = Server(data, database_url)
    key = server.key()
    server.start()
    killed = []

    def on_accept(n):
        if n == kill_after and not killed:
            server.kill9()  # under load: uploads streaming in, the worker mid-scan
            killed.append(time.time())
    accepted, unanswered, errors = asyncio.run(post_all(server.url, key, list(enumerate(images)), concurrency,
                                                        on_accept=on_accept))
    engine = create_engine(sa_url(database_url, data))
    with engine.connect() as conn:
        running_at_kill = conn.execute(select(func.count()).where(scans.c.status == "running")).scalar()
    t_restart = time.time()
    server.start()
    try:
        # The client re-sends what got no answer (as any client of an API does after a connection error).
        retried, unanswered2, errors2 = asyncio.run(post_all(server.url, key, [(i, images[i]) for i in unanswered],
                                                             concurrency))
        wait_drained(engine)
        with engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(select(scans.c.id, scans.c.sha256, scans.c.status,
                                                         scans.c.verdict_json, scans.c.attempts,
                                                         scans.c.created_at))}
    finally:
        server.stop()
        engine.dispose()
    acked = {sid for sid, _ in accepted.values()} | {sid for sid, _ in retried.values()}
    stored = [sid for sid in acked if sid in rows and rows[sid].status == "done" and rows[sid].verdict_json]
    per_sha: dict[str, int] = {}
    for r in rows.values():
        per_sha[r.sha256] = per_sha.get(r.sha256, 0) + 1
    twice = sum(n - 1 for n in per_sha.values() if n > 1)
    return [
        ("uploads accepted before the kill -9", f"{len(accepted)}"),
        ("uploads with no answer (connection cut), re-sent", f"{len(unanswered)}"),
        ("jobs running at the kill", f"{running_at_kill}"),
        ("accepted in all / results stored for them", f"{len(acked)} / {len(stored)}"),
        ("re-sent uploads answered with the scan stored before the kill",
         f"{sum(rows[sid].created_at < t_restart for sid, _ in retried.values())}"),
        ("rows stored without an answer to the client, in the end", f"{len(set(rows) - acked)}"),
        ("uploads stored twice (goal 0)", f"{twice}"),
        ("jobs scanned again after the restart", f"{sum(r.attempts > 1 for r in rows.values())}"),
        ("errors after restart (goal 0)", f"{len(errors) + len(errors2) + len(unanswered2)}"),
    ]


def pg_database():
    try:
        import psycopg

        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except Exception as err:
        print(f"PostgreSQL skipped: none reachable at {PG_URL} ({type(err).__name__})")
        return None
    name = f"deepscreen_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    return PG_URL.rsplit("/", 1)[0] + "/" + name, lambda: admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{title}")
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value:>12}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--uploads", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--crash-uploads", type=int, default=200)
    ap.add_argument("--kill-after", type=int, default=80)
    ap.add_argument("--workers", type=int, default=None, help="scan worker processes (default: the server's)")
    args = ap.parse_args()
    WORKERS[0] = args.workers
    images = photos(max(args.uploads, args.crash_uploads) + IDLE)
    idle, images = images[-IDLE:], images[:-IDLE]
    print(f"{args.uploads} uploads at concurrency {args.concurrency}; photos {min(map(len, images))}-"
          f"{max(map(len, images))} bytes; {os.cpu_count()} CPUs; workers: {args.workers or 'default'}")
    for store in (("sqlite", "postgresql") if args.store == "both" else (args.store,)):
        drop = None
        url = None
        if store == "postgresql":
            made = pg_database()
            if made is None:
                continue
            base, drop = made
        try:
            with tempfile.TemporaryDirectory() as tmp:
                if store == "postgresql":
                    url = base + "_t"
                    _create(url)
                print_table(f"[{store}] throughput", throughput(Path(tmp), url, images[:args.uploads], idle,
                                                              args.concurrency))
                if store == "postgresql":
                    url = base + "_c"
                    _create(url)
                print_table(f"[{store}] kill -9 under load, restart", crash(
                    Path(tmp), url, images[:args.crash_uploads], args.concurrency, args.kill_after))
        finally:
            if drop:
                for suffix in ("_t", "_c"):
                    _drop(base + suffix)
                drop()


def _create(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"')


def _drop(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


if __name__ == "__main__":
    main()
