"""Prometheus metrics, read from the store at scrape time.

The numbers come from the job table rather than in-process counters because the work happens in separate worker
processes and must survive restarts; one aggregate query per scrape is cheap next to a scan.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine

from .store import scans

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class StoreCollector:
    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self):
        with self.engine.connect() as conn:
            by_status = dict(conn.execute(select(scans.c.status, func.count()).group_by(scans.c.status)).all())
            by_route = conn.execute(select(scans.c.route, scans.c.label, func.count())
                                    .where(scans.c.status.in_(("done", "error")))
                                    .group_by(scans.c.route, scans.c.label)).all()
            scanned = scans.c.scan_seconds
            where = (scans.c.cached_from.is_(None), scanned.is_not(None))
            cols = [func.sum(case((scanned <= b, 1), else_=0)) for b in BUCKETS]
            row = conn.execute(select(func.count(), func.coalesce(func.sum(scanned), 0.0), *cols).where(*where)).one()
        depth = GaugeMetricFamily("deepscreen_queue_depth", "Jobs waiting or being scanned", labels=["status"])
        for status in ("queued", "running"):
            depth.add_metric([status], by_status.get(status, 0))
        yield depth
        routed = CounterMetricFamily("deepscreen_scans", "Finished scans by route and label",
                                     labels=["route", "label"])
        for route, label, n in by_route:
            routed.add_metric([route or "", label or ""], n)
        yield routed
        errors = CounterMetricFamily("deepscreen_scan_errors", "Scans that ended in error (routed reject)")
        errors.add_metric([], by_status.get("error", 0))
        yield errors
        count, total = row[0], float(row[1] or 0.0)
        buckets = [(str(b), int(n or 0)) for b, n in zip(BUCKETS, row[2:])] + [("+Inf", count)]
        hist = HistogramMetricFamily("deepscreen_scan_seconds", "Time the scanner spent on a file (cached reuse "
                                     "excluded)")
        hist.add_metric([], buckets, total)
        yield hist


def render(engine: Engine) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(engine))
    return generate_latest(registry)
