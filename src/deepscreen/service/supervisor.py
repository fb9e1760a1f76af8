"""Starts the scan worker processes, restarts any that die (re-queuing the job it held), keeps this server's
heartbeat, and re-queues jobs of servers that are gone. Runs as one thread in the server process."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

from sqlalchemy.engine import Engine

from . import jobs
from .settings import ServiceSettings
from .worker import SETTINGS_ENV, ready_file

log = logging.getLogger("deepscreen.service")
HEARTBEAT_S = 5.0


class Supervisor:
    def __init__(self, settings: ServiceSettings, engine: Engine):
        self.settings = settings
        self.engine = engine
        self.server_id = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.procs: dict[int, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        jobs.register_server(self.engine, self.server_id, self.host, os.getpid())
        n = jobs.recover(self.engine, self.server_id, self.host, self.settings.server_lease_s,
                         self.settings.job_max_attempts)
        if n:
            log.info("re-queued %d job(s) left running by a previous start", n)
        # Workers are spawned from this thread, which lives as long as the server: PR_SET_PDEATHSIG fires when
        # the thread that forked a child ends, so they must not be started from a short-lived one.
        self._thread = threading.Thread(target=self._loop, name="deepscreen-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self, number: int) -> None:
        ready_file(self.settings.data_dir, self.server_id, number).unlink(missing_ok=True)
        env = dict(os.environ)
        env[SETTINGS_ENV] = self.settings.to_json()
        # Share the cores among workers instead of each one assuming it has them all.
        threads = str(max(1, (os.cpu_count() or 2) // self.settings.workers))
        env.setdefault("OMP_NUM_THREADS", threads)
        self.procs[number] = subprocess.Popen(
            [sys.executable, "-m", "deepscreen.service.worker", "--server-id", self.server_id,
             "--worker", str(number), "--parent", str(os.getpid())], env=env)

    def _loop(self) -> None:
        for n in range(self.settings.workers):
            self._spawn(n)
        last_beat = last_sweep = time.monotonic()
        restarts: dict[int, float] = {}
        while not self._stop.wait(0.5):
            try:
                for n, proc in list(self.procs.items()):
                    if proc.poll() is None:
                        continue
                    log.warning("worker %d exited with %s; restarting it", n, proc.returncode)
                    jobs.requeue_worker(self.engine, self.server_id, n, self.settings.job_max_attempts)
                    # A worker that cannot even start (models missing) must not be restarted in a tight loop.
                    if time.monotonic() - restarts.get(n, 0) < 10:
                        time.sleep(5)
                    restarts[n] = time.monotonic()
                    self._spawn(n)
                now = time.monotonic()
                if now - last_beat >= HEARTBEAT_S:
                    jobs.heartbeat(self.engine, self.server_id)
                    last_beat = now
                if now - last_sweep >= self.settings.server_lease_s:
                    jobs.recover(self.engine, self.server_id, self.host, self.settings.server_lease_s,
                                 self.settings.job_max_attempts)
                    last_sweep = now
            except Exception:  # the store may be briefly unreachable; keep supervising
                log.exception("supervisor pass failed")

    def ready(self) -> bool:
        """At least one worker is alive and has loaded its models."""
        return any(p.poll() is None and ready_file(self.settings.data_dir, self.server_id, n).exists()
                   for n, p in list(self.procs.items()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for n, p in self.procs.items():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
            ready_file(self.settings.data_dir, self.server_id, n).unlink(missing_ok=True)
        # Hand back what we held now, so another server need not wait out our lease.
        jobs.requeue(self.engine, jobs.scans.c.claimed_server == self.server_id, self.settings.job_max_attempts,
                     refund=True)
