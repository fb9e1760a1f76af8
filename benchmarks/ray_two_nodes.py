"""`deepscreen batch --engine ray --ray-address` on a Ray cluster of two nodes, both on this machine.

  .venv/bin/python benchmarks/ray_two_nodes.py [--photos 120] [--videos 4] [--work /tmp/ray_two_nodes]

Starts a head node and a second worker node (two raylets, two object stores: `ray.cluster_utils.Cluster`, the way
Ray tests multi-node scheduling on one host), each with 2 CPUs, then runs the batch CLI against it as a user on a
cluster would, in two stages (2 prepare + 2 judge actors) and in one stage (4 actors), and the local engine on the
same collection. It prints where each stage's actors ran (node by node), whether the rows equal the
local engine's, and the wall time. What this does not show: a network between the nodes (objects move between
the two object stores through loopback) or a shared file system (both nodes see this machine's disk).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from bench_batch import make_collection  # noqa: E402  (the same LFW photos and generated clips)

VOLATILE = ("elapsed_s", "scanned_at", "timings_json")


def rows(out: Path) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k not in VOLATILE}
                   for r in pq.read_table(out / "results.parquet").to_pylist()), key=lambda r: r["path"])


def batch(source: Path, out: Path, *args: str) -> float:
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "deepscreen.cli", "batch", str(source), "--out", str(out), "-q", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 2):
        sys.exit(f"deepscreen batch {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=120)
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ray_two_nodes"))
    args = ap.parse_args()
    photo_list, videos = make_collection(args.work, args.photos, args.videos)
    source = args.work / "all.txt"
    source.write_text(photo_list.read_text() + "".join(f"{p}\n" for p in sorted(videos.glob("*.mp4"))))

    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        head = cluster.head_node.unique_id
        nodes = {n["NodeID"]: ("head" if n["NodeID"] == head else "worker") for n in ray.nodes()}
        print(f"cluster {cluster.address}: {len(nodes)} nodes, {ray.cluster_resources().get('CPU', 0):g} CPUs")
        local_s = batch(source, args.work / "local", "--workers", "2")
        runs = {"two stages (2 prepare + 2 judge actors)": ("--workers", "2", "--threads-per-worker", "1"),
                "one stage (4 actors)": ("--workers", "4", "--threads-per-worker", "1", "--ray-judge-workers", "0")}
        seen: set[str] = set()
        print(f"local engine, 2 workers: {len(rows(args.work / 'local'))} rows, {local_s:.1f} s")
        for name, flags in runs.items():
            out = args.work / name.split()[0]
            wall = batch(source, out, "--engine", "ray", "--ray-address", cluster.address, *flags)
            table = ray._private.state.actors()  # every actor the cluster has run, alive or not (no dashboard)
            actors = [a for k, a in table.items() if k not in seen
                      and any(s in a["ActorClassName"] for s in ("PrepareStage", "JudgeStage", "ScanStage"))]
            seen.update(table)
            where = Counter((a["ActorClassName"].split("(")[-1].rstrip(")"), nodes.get(a["Address"]["NodeID"], "?"))
                            for a in actors)
            same = rows(out) == rows(args.work / "local")
            print(f"{name}: {wall:.1f} s, rows equal to the local engine's: {same}; actors by node: "
                  + ", ".join(f"{cls} on {node} x{n}" for (cls, node), n in sorted(where.items())))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
