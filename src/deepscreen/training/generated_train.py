"""Train the generated-image detector (issue #37 part 2): `python -m deepscreen.training.generated_train <step>`.

Steps (each caches its output under .cache/generated/, so a rerun resumes):
  make      real sources (one LFW photo for each of 1,600 people, every world/train photo, 12 frames of each real
            training video) and fakes of four
            families (synthesis/generated.py), each family until its time budget is spent
  patches   every picture, real and fake, through the same channel (30 % sharpened, classical resize, JPEG/WebP
            q 60-95), real pictures also shrunk and enlarged classically, or shrunk by area; then cut
            into luminance patches exactly as the detector cuts them; train-split patches packed for a GPU
  (fit)     python src/deepscreen/training/generated_fit.py .cache/generated/gpu/train.npz .cache/generated/fits
            (numpy + torch only; ran on a GPU machine, runs on the CPU too, slowly)
  score     Platt calibration of each fitted run on the calibration split, test tables (all families, each
            family, each generator, reals), the shipped weights written from run `main` (`--ship` another)

Splits are by group (an LFW person; a world identity or file; a block of 8 DCGAN seeds): 70 % train, 15 %
calibration, 15 % test. A fake made from a real photo inherits the photo's group, so test fakes show test people.
../shared/data/faces/world/dev and ../shared/data/dev are never read here (benchmarks/eval_generated.py measures
false alarms on them).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import pickle
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import PROJECT_ROOT, SHARED_DIR

CACHE = PROJECT_ROOT / ".cache" / "generated"
SPLITS = (("train", 70), ("calib", 85), ("test", 100))


def split_of(group: str) -> str:
    r = zlib.crc32(group.encode()) % 100
    return next(name for name, upto in SPLITS if r < upto)


def load_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def real_sources(shared: Path = SHARED_DIR, lfw_people: int = 1600, seed: int = 0) -> list[dict]:
    """Real photos: one LFW photo for each of `lfw_people` people (drawn at random) and every world/train photo."""
    rng = np.random.default_rng(seed)
    lfw = shared / "data/faces/lfw"
    people = sorted(p.name for p in lfw.iterdir() if p.is_dir())
    out = []
    for person in rng.permutation(people)[:lfw_people]:
        files = sorted((lfw / person).glob("*.jpg"))
        out.append({"path": str(files[rng.integers(len(files))]), "group": f"lfw:{person}", "source": "lfw"})
    world = shared / "data/faces/world"
    with open(world / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] == "train":  # never dev
                out.append({"path": str(world / row["file"]), "source": row["source_dataset"],
                            "group": f"{row['source_dataset']}:{row['identity'] or row['file']}"})
    out += video_sources(shared)
    for s in out:
        s["split"] = split_of(s["group"])
    return out


def video_sources(shared: Path = SHARED_DIR, per_clip: int = 12, folder: Path = CACHE / "video_frames") -> list[dict]:
    """Whole frames of the real training videos (people on camera, H.264/HEVC/VP9 as shipped), decoded by the
    scanner's media code and kept as lossless PNG: without them every real picture is a photo, and a codec's
    traces could pass for a generator's."""
    from ..config import Limits, Sampling
    from ..media import iter_frames, probe

    folder.mkdir(parents=True, exist_ok=True)
    out, limits = [], Limits()
    for clip in sorted((shared / "data/video/train/real").glob("*")):
        paths = sorted(folder.glob(f"{clip.stem}__[0-9][0-9].png"))  # not another clip whose name starts alike
        if not paths:
            for k, frame in enumerate(iter_frames(clip, probe(clip, limits), Sampling(frames=per_clip), limits)):
                paths.append(folder / f"{clip.stem}__{k:02d}.png")
                Image.fromarray(frame.rgb).save(paths[-1], compress_level=1)
        out += [{"path": str(p), "group": f"video:{clip.name}", "source": "video"} for p in paths]
    return out


def _save(path: Path, items: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(items))
    tmp.replace(path)


def _load(path: Path) -> list[dict]:
    return pickle.loads(path.read_bytes()) if path.exists() else []


def make_fakes(family: str, sources: list[dict], budget_s: float, seed: int = 0, log=print) -> list[dict]:
    """Fakes of one family, appended to .cache/generated/fakes_<family>.pkl until `budget_s` seconds are spent
    (resumes where a previous run stopped). Each item: png bytes, group, split, family, generator, source."""
    from ..synthesis import generated as gen

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"fakes_{family}.pkl"
    items = _load(path)
    done = len(items)
    rng = np.random.default_rng([seed, zlib.crc32(family.encode()), done])
    t0, last_save = time.time(), time.time()
    order = np.random.default_rng([seed, zlib.crc32(family.encode())]).permutation(len(sources))
    if family == "dcgan":
        n = int(budget_s)  # DCGAN is instant: budget = number of faces
        if done < n:
            faces = gen.dcgan_faces(n - done, seed=seed + done)
            for i, face in enumerate(faces):
                group = f"dcgan:{(done + i) // 8}"  # blocks of 8 consecutive seeds
                items.append({"png": png(face), "group": group, "split": split_of(group), "family": family,
                              "generator": "dcgan_digiface", "source": "dcgan"})
        _save(path, items)
        return items
    aes = {}
    if family == "autoencoder":
        import torch

        for kind in ("transposed", "nearest"):
            wpath = CACHE / f"ae_{kind}.pt"
            if wpath.exists():
                ae = gen.UpsamplingAE(kind)
                ae.load_state_dict(torch.load(wpath))
                aes[kind] = ae.eval()
            else:
                train_imgs = [load_rgb(s["path"]) for s in sources if s["split"] == "train"][:400]
                aes[kind] = gen.train_autoencoder(train_imgs, kind, steps=400, seed=seed, log=log)
                torch.save(aes[kind].state_dict(), wpath)
        t0 = time.time()  # training the autoencoders is not part of the budget
    k = done
    while time.time() - t0 < budget_s and k < len(sources):
        s = sources[order[k]]
        rgb = load_rgb(s["path"])
        if family == "realesrgan":
            # Half by the RRDB x4plus net, half by the compact animevideo-v3 nets (x2, x4).
            name = ("realesrgan_x4plus" if k % 2 == 0 else
                    "realesrgan_animev3_x2" if k % 4 == 1 else "realesrgan_animev3_x4")
            fake = gen.shrink_restore(rgb, name, rng)
        elif family == "realsr":
            name = "realsr_df2k_x4"
            fake = gen.shrink_restore(rgb, name, rng)
        elif family == "autoencoder":
            name = "ae_transposed" if k % 2 == 0 else "ae_nearest"
            h, w = rgb.shape[:2]
            if max(h, w) > 256:  # keep compute small; the channel resizes anyway
                f = 256 / max(h, w)
                rgb = gen.resize(rgb, (round(w * f), round(h * f)), "area")
            fake = gen.ae_reconstruct(aes[name[3:]], rgb)
        else:
            raise ValueError(f"unknown family {family!r}; known: {', '.join(gen.FAMILIES)}")
        items.append({"png": png(fake), "group": s["group"], "split": s["split"], "family": family,
                      "generator": name, "source": s["source"], "real_path": s["path"]})
        k += 1
        if time.time() - last_save > 60:
            _save(path, items)
            last_save = time.time()
            log(f"{family}: {len(items)} fakes ({time.time() - t0:.0f} s)")
    _save(path, items)
    log(f"{family}: {len(items)} fakes in total")
    return items


def cmd_make(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    sources = real_sources()
    (CACHE).mkdir(parents=True, exist_ok=True)
    (CACHE / "sources.json").write_text(json.dumps(sources))
    budgets = {"dcgan": args.dcgan, "autoencoder": args.autoencoder_s, "realesrgan": args.realesrgan_s,
               "realsr": args.realsr_s}
    for family in args.families.split(","):
        make_fakes(family, sources, budgets[family], log=lambda m: print(m, flush=True))


# ------------------------------------------------------------------------------------------------ patches step
REAL_DRAWS = 1  # channel draws per real photo as it is (plus a shrunk-and-enlarged copy and a shrunk one)
SHARPEN_P = 0.3  # share of every picture, real or fake, sharpened before the channel (synthesis.generated.sharpen)
FAKE_DRAWS = 2


def _items() -> list[dict]:
    """Every training item before the channel: reals (by path, as is or classically shrunk and enlarged) and the
    cached fakes of each family."""
    from ..synthesis.generated import FAMILIES

    sources = json.loads((CACHE / "sources.json").read_text())
    items = []
    for s in sources:
        base = {"path": s["path"], "group": s["group"], "split": s["split"], "source": s["source"], "label": 0,
                "family": "real"}
        items += [dict(base, generator="real", draws=REAL_DRAWS), dict(base, generator="real_resized", draws=1),
                  dict(base, generator="real_shrunk", draws=1)]
    for fam in FAMILIES:
        for i, it in enumerate(_load(CACHE / f"fakes_{fam}.pkl")):
            items.append({"fake": (fam, i), "group": it["group"], "split": it["split"], "source": it["source"],
                          "label": 1, "family": fam, "generator": it["generator"], "draws": FAKE_DRAWS})
    return items


def _picture(item: dict, fakes: dict, rng: np.random.Generator) -> np.ndarray:
    """The picture an item stands for, before the channel."""
    from ..synthesis import generated as gen

    if item["label"] == 0:
        rgb = load_rgb(item["path"])
        if item["generator"] == "real_resized":
            return gen.classical_restore(rgb, rng)
        return gen.classical_shrink(rgb, rng) if item["generator"] == "real_shrunk" else rgb
    fam, i = item["fake"]
    rgb = gen.decode(fakes[fam][i]["png"])
    if fam == "dcgan":  # 64 px: enlarged classically like the real_resized reals
        up = float(rng.uniform(1.5, 3.0))
        rgb = gen.resize(rgb, (round(64 * up),) * 2, str(rng.choice(["bicubic", "lanczos", "bilinear"])))
    return rgb


def cmd_patches(args) -> None:
    """Channel + the detector's own patch cutting for every item: .cache/generated/patches.npz (all pictures) and
    .cache/generated/gpu/train.npz (packed train-split patches, within GPU_BUDGET, for generated_fit.py)."""
    from ..detectors.generated_net import K, select_patches
    from ..synthesis import generated as gen
    from ..synthesis.generated import FAMILIES
    from .generated_fit import pack

    items = _items()
    fakes = {fam: _load(CACHE / f"fakes_{fam}.pkl") for fam in FAMILIES}
    patches, img_of, meta = [], [], []
    t0 = time.time()
    for n, item in enumerate(items):
        rng = np.random.default_rng([args.seed, n])
        for _ in range(item["draws"]):
            rgb = _picture(item, fakes, rng)
            if rng.random() < SHARPEN_P:
                rgb = gen.sharpen(rgb, rng)
            _, rgb = gen.channel(rgb, rng)
            p, _ = select_patches(rgb, K)
            if not len(p):
                continue
            patches.append(p)
            img_of += [len(meta)] * len(p)
            meta.append({k: item[k] for k in ("group", "split", "source", "label", "family", "generator")})
        if n % 1000 == 0:
            print(f"patches: {n}/{len(items)} items, {len(meta)} pictures ({time.time() - t0:.0f} s)", flush=True)
    patches, img_of = np.concatenate(patches), np.array(img_of)
    np.savez(CACHE / "patches.npz", patches=patches, img=img_of, meta=json.dumps(meta))
    # Train split for the fit: `--fit-patches` patches in random order (all of them when fewer), packed (zlib of
    # horizontal differences) so they can travel to a GPU machine (64 MiB at most there).
    rng = np.random.default_rng(args.seed)
    train = rng.permutation(np.flatnonzero(np.array([meta[i]["split"] == "train" for i in img_of])))
    n = min(len(train), args.fit_patches)
    sel = np.sort(train[:n])
    fam_code = {f: i + 1 for i, f in enumerate(FAMILIES)} | {"real": 0}
    (CACHE / "gpu").mkdir(exist_ok=True)
    np.savez(CACHE / "gpu" / "train.npz", blob=pack(patches[sel]), shape=np.array(patches[sel].shape),
             label=np.array([meta[i]["label"] for i in img_of[sel]], np.uint8),
             family=np.array([fam_code[meta[i]["family"]] for i in img_of[sel]], np.int8), img=img_of[sel])
    print(f"patches: {len(meta)} pictures, {len(img_of)} patches; {len(sel)} of {len(train)} train patches packed "
          f"for the GPU ({(CACHE / 'gpu' / 'train.npz').stat().st_size / 2**20:.1f} MiB)", flush=True)


# ------------------------------------------------------------------------------------- calibration and tables
def load_patches(path: Path = CACHE / "patches.npz"):
    z = np.load(path)
    return z["patches"], z["img"], json.loads(str(z["meta"]))


def model_from_fit(path: Path):
    import torch

    from ..detectors.generated_net import PatchCNN

    run = torch.load(path, map_location="cpu")
    model = PatchCNN(run["width"], run["spectrum"])
    model.load_state_dict(run["state"])
    return model.eval(), run


def image_logits(model, patches: np.ndarray, img: np.ndarray, n_images: int, pictures: np.ndarray,
                 batch: int = 512) -> np.ndarray:
    """Mean patch logit of each picture in `pictures` (others: nan)."""
    import torch

    sel = np.flatnonzero(np.isin(img, pictures))
    z = np.empty(len(sel))
    with torch.inference_mode():
        for i in range(0, len(sel), batch):
            z[i:i + batch] = model(torch.from_numpy(patches[sel[i:i + batch]])).numpy()
    sums = np.bincount(img[sel], weights=z, minlength=n_images)
    counts = np.bincount(img[sel], minlength=n_images)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


HEADER = ("fakes", "real", "fake", "AUC", "flagged (p>=0.5)")


def report(z, meta, platt, split: str = "test", exclude: str | None = None, by: str = "family") -> list[tuple]:
    """Rows (what, n_real, n_fake, AUC, share flagged at p >= 0.5) on a split: all fakes, each family (or each
    generator), and the reals."""
    from ..detectors.dsp import sigmoid
    from .metrics import auc

    y = np.array([m["label"] for m in meta])
    fam = np.array([m[by] for m in meta])
    family = np.array([m["family"] for m in meta])
    spl = np.array([m["split"] for m in meta])
    p = sigmoid(platt[0] * z + platt[1])
    real = (spl == split) & (y == 0)
    rows = []
    for name in ["all"] + sorted(set(fam[y == 1])):
        fake = (spl == split) & (y == 1) & ((fam == name) if name != "all" else (family != exclude))
        if not fake.any():
            continue
        sel = real | fake
        held = name == exclude or (by != "family" and exclude and family[fake][0] == exclude)
        rows.append((name + (" (held out)" if held else ""), int(real.sum()), int(fake.sum()),
                     f"{auc(y[sel], z[sel]):.3f}", f"{(p[fake] >= 0.5).mean():.1%}"))
    for name in sorted(set(np.array([m["generator"] for m in meta])[y == 0])):
        r = real & (np.array([m["generator"] for m in meta]) == name)
        rows.append((f"{name} (real) flagged", int(r.sum()), 0, "", f"{(p[r] >= 0.5).mean():.1%}"))
    return rows


def operating_point(platt: tuple[float, float], real_logits: np.ndarray, max_flagged: float,
                    step: float = 0.25) -> tuple[float, float]:
    """The Platt calibration with its intercept moved down by the smallest multiple of `step` at which at most
    `max_flagged` of these real pictures reach p >= 0.5 (generated pictures are rarer than half of what a screener
    sees; the same rule as face_blend's operating point)."""
    a, b = platt
    shift = 0.0
    while np.mean(a * real_logits + b - shift >= 0) > max_flagged and shift < 20:
        shift += step
    return a, b - shift


def cmd_score(args) -> None:
    """Calibrate each fitted run on the calibration split, print its test tables; write the shipped weights."""
    import torch

    from ..detectors.generated_net import save_weights
    from .metrics import auc, fit_platt

    torch.set_num_threads(args.threads)
    patches, img, meta = load_patches()
    y = np.array([m["label"] for m in meta])
    spl = np.array([m["split"] for m in meta])
    fam = np.array([m["family"] for m in meta])
    results = {}
    for name in args.runs.split(","):
        model, run = model_from_fit(Path(args.fits) / f"{name}.pt")
        left_out = run["left_out"]
        todo = np.flatnonzero(spl != "train")
        z = image_logits(model, patches, img, len(meta), todo)
        cal = (spl == "calib") & (fam != left_out)
        fitted = fit_platt(y[cal], z[cal])
        platt = operating_point(fitted, z[cal & (y == 0)], args.max_real_flagged)
        print(f"\n## {name} (width {run['width']}, spectrum {run['spectrum']}, without {left_out}, {run['epochs']} "
              f"epochs); calibration-split AUC {auc(y[cal], z[cal]):.3f}; Platt fitted a={fitted[0]:.4f} "
              f"b={fitted[1]:+.4f}, shipped b={platt[1]:+.4f} (at most {args.max_real_flagged:.0%} of calibration "
              "reals flagged)")
        rows = report(z, meta, platt, exclude=left_out)
        print(table(rows, HEADER))
        if name == args.ship:
            print(table(report(z, meta, platt, by="generator"), HEADER))
        results[name] = (model, run, platt, rows, fitted)
    np.save(CACHE / "scored_runs.npy", np.array(list(results)))
    if args.ship in results and args.out:
        model, run, platt, rows, fitted = results[args.ship]
        counts = {}
        for m in meta:
            if m["split"] == "train":
                counts[m["generator"]] = counts.get(m["generator"], 0) + 1
        save_weights(model, Path(args.out), {
            "name": "generated", "version": args.version, "platt": list(platt), "platt_fitted": list(fitted),
            "max_real_flagged": args.max_real_flagged, "epochs": run["epochs"],
            "averaged_epochs": run.get("averaged_epochs", []),
            "trained_on_pictures": counts, "test": [dict(zip(HEADER, r)) for r in rows]})
        print(f"wrote {args.out}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m deepscreen.training.generated_train")
    sub = ap.add_subparsers(dest="step", required=True)
    m = sub.add_parser("make", help="make the fakes (cached; resumes)")
    m.add_argument("--families", default="dcgan,autoencoder,realesrgan,realsr")
    m.add_argument("--dcgan", type=int, default=900, help="number of DCGAN faces")
    m.add_argument("--autoencoder-s", type=float, default=300)
    m.add_argument("--realesrgan-s", type=float, default=900)
    m.add_argument("--realsr-s", type=float, default=900)
    m.add_argument("--threads", type=int, default=1)
    m.set_defaults(func=cmd_make)
    p = sub.add_parser("patches", help="channel + patch features of every item")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fit-patches", type=int, default=200_000,
                   help="train patches packed for the fit, at most (v1.1: all 93,408, 128 MiB)")
    p.set_defaults(func=cmd_patches)
    sc = sub.add_parser("score", help="calibrate fitted runs (generated_fit.py output), print tables, ship main")
    sc.add_argument("--fits", default=str(CACHE / "fits"))
    sc.add_argument("--runs", default="main")
    sc.add_argument("--ship", default="main", help="the run whose weights are written (e.g. main_avg)")
    sc.add_argument("--out", default=str(PROJECT_ROOT / "models" / "generated.safetensors"))
    sc.add_argument("--version", default="1.0")
    sc.add_argument("--threads", type=int, default=1)
    sc.add_argument("--max-real-flagged", type=float, default=0.05)
    sc.set_defaults(func=cmd_score)
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
