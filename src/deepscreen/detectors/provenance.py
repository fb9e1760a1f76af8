"""Provenance: what a file declares about its own origin, read, checked where it can be, and reported. No learning.

Three sources, strongest first (docs/provenance.md says what each finding means and its limits):
  1. C2PA Content Credentials (c2pa-python): a signed manifest inside the file. Its signature and the hash of the
     bytes it covers are checked; the actions say how the content came to be (`c2pa.created` with a
     `digitalSourceType` of trained algorithmic media = made by a generative model; `digitalCapture` = a camera).
  2. The invisible watermarks Stable Diffusion's reference scripts (b"StableDiffusionV1", 136 bits) and SDXL
     (diffusers, 48 fixed bits) put into every image they make, both with imwatermark's dwtDct method (decoded here
     by a vectorised copy of imwatermark's decoder: same bits, ~10x faster).
  3. Generator metadata: PNG text chunks with prompts and sampler settings (A1111, ComfyUI, InvokeAI, NovelAI,
     Fooocus), `Software` / `CreatorTool` tags naming a known generator, an IPTC DigitalSourceType in XMP.

Scores (the `Evidence.score` convention, P(manipulated)): a valid AI-generation declaration or a generator's watermark
is decisive (0.97-0.99); unsigned generator metadata is strong but forgeable (0.9); a valid, trusted camera-capture
manifest of the untouched file is evidence of authenticity (0.05). **Absence of all of these is no evidence**:
most real and most fake files carry none (platforms strip metadata), so nothing found gives score None and no
Evidence entry at all. A manifest that no longer matches the file (tampered, or edited by a tool that kept the old
manifest) or cannot be parsed is reported in words, unscored: it says the file changed, not how.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..verdict import Evidence
from . import Detector, register

# IPTC digital source types (http://cv.iptc.org/newscodes/digitalsourcetype/), matched on the last path part so
# http/https spellings both count.
AI_SOURCE_TYPES = {
    "trainedAlgorithmicMedia": "with a trained model (generative AI)",
    "compositeWithTrainedAlgorithmicMedia": "as a composite that includes generative-AI content",
    "algorithmicMedia": "by a computer algorithm, not a camera",
}
CAPTURE_SOURCE_TYPES = {"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print"}

# Watermarks of Stable Diffusion (../shared/MODELS.md section 6). SD 1.x/2.x scripts embed these bytes; SDXL
# (diffusers' StableDiffusionXLWatermarker) these 48 bits; both dwtDct. An unmarked image decodes to about half the
# bits matching (measured 60-74 of 136 and 20-28 of 48 on six test pictures); a freshly marked one is not always
# exact either (rounding to uint8 and clipping in bright or dark areas: 123/136 on a test picture). Thresholds:
# >= 112 of 136 (7.5 standard deviations above chance) and >= 42 of 48 (chance about 5e-8 per image).
SD1_MESSAGE = b"StableDiffusionV1"
SDXL_BITS = [int(b) for b in bin(0b101100111110110010010000011110111011000110011110)[2:]]
SD1_MIN_MATCH, SDXL_MIN_MATCH = 112, 42
# dwtDct needs >= 256x256; decoding is a Python loop over 4x4 blocks (~20 ms at 512x512), so images far beyond
# generator sizes (which were resized anyway, and a resize destroys the mark) are not decoded.
WATERMARK_MAX_PIXELS = 2048 * 2048

# Unsigned metadata of generators. PNG text keys (what each tool writes) and names in Software/CreatorTool tags.
PNG_KEYS = {
    "parameters": "AUTOMATIC1111 / Forge / SD.Next",  # prompt + "Steps: .., Sampler: .., CFG scale: .., Seed: .."
    "prompt": "ComfyUI",  # the executed node graph as JSON
    "workflow": "ComfyUI",
    "invokeai_metadata": "InvokeAI",
    "sd-metadata": "InvokeAI",
    "Dream": "InvokeAI (dream)",
    "fooocus_scheme": "Fooocus",
}
KNOWN_GENERATORS = ("midjourney", "dall-e", "dall·e", "dalle", "stable diffusion", "stablediffusion", "novelai",
                    "adobe firefly", "firefly", "imagen", "leonardo.ai", "comfyui", "automatic1111", "invokeai",
                    "fooocus", "bing image creator", "ideogram", "flux", "gpt-4o", "chatgpt")

SCORE_C2PA_AI_TRUSTED, SCORE_C2PA_AI_VALID, SCORE_WATERMARK = 0.99, 0.97, 0.99
SCORE_METADATA, SCORE_CAPTURE = 0.9, 0.05
TRUST_ENV = "DEEPSCREEN_C2PA_TRUST_ANCHORS"  # a PEM file of trusted root certificates (e.g. the C2PA trust list)


def _source_type(value: Any) -> str:
    return str(value or "").rstrip("/").rsplit("/", 1)[-1]


def _agent(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(str(value[k]) for k in ("name", "version") if value.get(k))
    return str(value or "")


@register
class Provenance(Detector):
    name = "provenance"
    version = "1.0"
    modality = "provenance"

    def __init__(self, trust_anchors: str | None = None):
        """trust_anchors: PEM text of root certificates whose signatures count as trusted; default: the file named
        by $DEEPSCREEN_C2PA_TRUST_ANCHORS, else none (signatures are still checked, signers are 'not on a trust
        list')."""
        if trust_anchors is None and os.environ.get(TRUST_ENV):
            trust_anchors = Path(os.environ[TRUST_ENV]).read_text()
        self.trust_anchors = trust_anchors
        try:
            import c2pa

            self._c2pa = c2pa
            from importlib.metadata import version

            self.version = f"1.0 (c2pa-python {version('c2pa-python')})"
        except ImportError:  # the provenance extra is not installed: C2PA is reported as not read
            self._c2pa = None

    # ---- the whole file -------------------------------------------------------------------------------------

    def read(self, path: str | os.PathLike, kind: str) -> tuple[Evidence | None, dict]:
        """(one Evidence, or None when nothing was found; what was found, for `Verdict.provenance`)."""
        return self.judge(self.find(path, kind))

    def find(self, path: str | os.PathLike, kind: str) -> dict:
        """What the file declares, unjudged (plain data: the scan core reads it while the file is at hand and
        judges it with the other detectors' results)."""
        path = Path(path)
        found: dict[str, Any] = {"c2pa": self.read_c2pa(path)}
        if kind == "image":
            img = _open_image(path)
            # A reader of optional declarations must never cost the file its verdict: an odd image mode or a
            # malformed chunk is a note here, not a scan error.
            for key, fn in (("watermark", self.read_watermark), ("metadata", read_metadata)):
                try:
                    found[key] = fn(img)
                except Exception as err:
                    found[key] = {"checked": False, "note": f"not read ({type(err).__name__}: {err})"[:200]}
        return found

    def judge(self, found: dict) -> tuple[Evidence | None, dict]:
        """Score and words from the findings; the strongest finding leads."""
        c, wm, md = found["c2pa"], found.get("watermark") or {}, found.get("metadata") or {}
        cues: list[tuple[float | None, str]] = []  # (score, sentence)
        declares_ai = False
        if c.get("present"):
            who = c.get("claim_generator") or "an unnamed tool"
            signer = c.get("signer") or "an unnamed signer"
            trust = "a trusted signer" if c.get("trusted") else f"{signer}, not on a trust list here"
            if not c.get("signature_valid"):
                what = "the file was changed after it was signed, or the manifest is damaged"
                if c.get("error"):
                    what = f"the manifest cannot be read ({c['error']})"
                claim = " They declare AI generation." if c.get("ai_generated") else ""
                cues.append((None, f"Content Credentials are present but do not validate: {what}; they are no "
                                   f"evidence either way.{claim}"))
            elif c.get("ai_generated"):
                declares_ai = True
                cues.append((SCORE_C2PA_AI_TRUSTED if c.get("trusted") else SCORE_C2PA_AI_VALID,
                             f"Content Credentials say: created by {c.get('agent') or who} "
                             f"{AI_SOURCE_TYPES[c['ai_generated']]} (signature valid, signed by {trust})."))
            elif c.get("capture"):
                edits = c.get("edits") or []
                edited = f", then {', '.join(edits)}" if edits else ""
                if c.get("trusted"):
                    cues.append((SCORE_CAPTURE, f"Content Credentials say: captured by {c.get('agent') or who}"
                                                f"{edited}; signed by a trusted signer, and the file is unchanged "
                                                "since it was signed (evidence of authenticity)."))
                else:
                    cues.append((None, f"Content Credentials say: captured by {c.get('agent') or who}{edited}; the "
                                       f"signature is valid but {signer} is not on a trust list here, so the claim "
                                       "cannot be checked (not scored)."))
            else:
                cues.append((None, f"Content Credentials from {who} (signature valid, signed by {trust}); they "
                                   "declare neither a capture nor AI generation."))
            if c.get("ai_ingredient") and not c.get("ai_generated") and c.get("signature_valid"):
                declares_ai = True
                cues.append((SCORE_C2PA_AI_VALID, "Content Credentials say: an ingredient of this file was made "
                                                  "with a trained model (generative AI)."))
        if wm.get("found"):
            declares_ai = True
            cues.append((SCORE_WATERMARK, f"An invisible {wm['found']} watermark is in the picture: it was made by "
                                          "that image generator."))
        if md.get("generator"):
            declares_ai = True
            cues.append((SCORE_METADATA, f"The file's metadata says it was made by {md['generator']}"
                                         f"{' (' + md['detail'] + ')' if md.get('detail') else ''}; unsigned, "
                                         "so it could have been added, but real cameras do not write it."))
        scores = [s for s, _ in cues if s is not None]
        # The most decisive cue leads: the highest score if any says AI, else the lowest (capture), else unscored.
        score = (max(scores) if declares_ai else min(scores)) if scores else None
        cues.sort(key=lambda c: 1 if c[0] is None else -abs(c[0] - 0.5))  # scored and most decisive first
        found.update(score=score, declares_ai=declares_ai, findings=[s for _, s in cues])
        if not cues:
            return None, found
        return Evidence(self.name, self.version, score, " ".join(s for _, s in cues)), found

    # ---- C2PA -----------------------------------------------------------------------------------------------

    def read_c2pa(self, path: Path) -> dict:
        out: dict[str, Any] = {"present": False}
        c2pa = self._c2pa
        if c2pa is None:
            return {"present": None, "note": "c2pa-python not installed: Content Credentials not read"}
        ctx = None
        if self.trust_anchors:
            ctx = c2pa.Context.from_dict({"trust": {"trust_anchors": self.trust_anchors}})
        try:
            kw = {"context": ctx} if ctx is not None else {}
            with open(path, "rb") as f:
                fmt = _c2pa_format(f.read(16), c2pa)
                if fmt is None:
                    return {"present": None, "note": "file type not readable for Content Credentials"}
                f.seek(0)
                reader = c2pa.Reader.try_create(fmt, f, **kw)
                if reader is None:
                    return out
                with reader:
                    store = json.loads(reader.json())
                    state = reader.get_validation_state()
        except Exception as err:  # a manifest that cannot be parsed (damaged JUMBF, bad CBOR): broken, say so
            if type(err).__name__ in ("ManifestNotFound", "_C2paManifestNotFound"):
                return out
            return {"present": True, "signature_valid": False, "trusted": False, "state": "Unreadable",
                    "error": " ".join(str(err).split())[:200]}
        return summarise_store(store, state)

    # ---- watermarks -----------------------------------------------------------------------------------------

    def read_watermark(self, img) -> dict:
        if img is None:
            return {"checked": False, "note": "image not decodable here"}
        if img.format == "JPEG":
            # Measured (tests): JPEG's chroma subsampling wipes the mark, even at quality 100, so decoding a JPEG
            # could only ever say "absent". Skipped to save the time; "not checked" is the honest answer.
            return {"checked": False, "note": "JPEG: the dwtDct watermark does not survive JPEG encoding"}
        w, h = img.size
        if w * h < 256 * 256 or w * h > WATERMARK_MAX_PIXELS:
            return {"checked": False, "note": f"{w}x{h}: outside the sizes the dwtDct watermark can be read at"}
        bits = _dwtdct_block_bits(np.asarray(img.convert("RGB")))
        sd1 = _dwtdct_decode(bits, 136)
        sd1_match = int((sd1 == np.unpackbits(np.frombuffer(SD1_MESSAGE, np.uint8))).sum())
        xl_match = int((_dwtdct_decode(bits, 48) == np.asarray(SDXL_BITS)).sum())
        found = ("Stable Diffusion" if sd1_match >= SD1_MIN_MATCH else
                 "Stable Diffusion XL" if xl_match >= SDXL_MIN_MATCH else None)
        return {"checked": True, "found": found, "sd1_bits_matching": f"{sd1_match}/136",
                "sdxl_bits_matching": f"{xl_match}/48"}


def _dwtdct_block_bits(rgb: np.ndarray, scale: float = 36.0) -> list[np.ndarray]:
    """imwatermark's dwtDct decoder (`EmbedMaxDct.decode`, scales [0, 36, 36], 4x4 blocks), vectorised: in the U
    colour channel, the Haar approximation band is cut into 4x4 blocks (row by row) and each block's bit is whether
    its largest non-DC coefficient, modulo the scale, lies in the upper half. Block k carries message bit
    k % length, so one pass serves every message length (SD's 136 bits and SDXL's 48). imwatermark loops over
    blocks in Python (~30 ms per decode at 512x512, 0.8 s for both at 2048x2048); this is the same arithmetic, checked
    bit for bit against imwatermark in tests/test_provenance.py."""
    import cv2

    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)  # = imwatermark's BGR2YUV of the BGR copy, without the copy
    row, col = rgb.shape[:2]
    out = []
    # imwatermark loops `for channel in range(2)` with scales [0, 36, 36]: Y is skipped (scale 0) and V never
    # reached, so the mark is in U alone, and so is what its decoder reads.
    for ch in (1,):
        x = yuv[:row // 4 * 4, :col // 4 * 4, ch].astype(np.float64)
        # Haar approximation band, bit-identical to pywt.dwt2(x, "haar")[0] (same products, same order: columns,
        # then rows) but 10x faster. Bit-identical matters: coefficients are multiples of 0.5, and one landing on
        # exactly half the scale flips its bit on a rounding difference.
        h = 0.7071067811865476  # pywt's haar dec_lo taps, 1/sqrt(2) as a double
        ca1 = x[0::2] * h + x[1::2] * h
        ca1 = ca1[:, 0::2] * h + ca1[:, 1::2] * h
        r, c = ca1.shape[0] // 4, ca1.shape[1] // 4
        blocks = ca1[:r * 4, :c * 4].reshape(r, 4, c, 4).transpose(0, 2, 1, 3).reshape(r * c, 16)
        pos = np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1
        val = np.abs(blocks[np.arange(len(blocks)), pos])
        out.append((val % scale > 0.5 * scale).astype(float))
    return out


def _dwtdct_decode(block_bits: list[np.ndarray], length: int) -> np.ndarray:
    """Message bits (0/1) of `length`: the mean of the blocks that carry each bit above 0.5
    (imwatermark: mean * 255 > 127)."""
    sums, counts = np.zeros(length), np.zeros(length)
    for b in block_bits:
        idx = np.arange(len(b)) % length
        sums += np.bincount(idx, b, length)
        counts += np.bincount(idx, minlength=length)
    return (sums / np.maximum(counts, 1) * 255 > 127).astype(np.uint8)


def summarise_store(store: dict, state: str | None) -> dict:
    """The facts a reader needs from a c2pa manifest store (c2pa-python's JSON) and its validation state."""
    label = store.get("active_manifest")
    manifests = store.get("manifests") or {}
    m = manifests.get(label) or {}
    # Failed checks, from the older flat list and the per-manifest results alike. An untrusted signer is not a
    # failure of the signature: it says who signed is not on our trust list, which `trusted` reports.
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = []
    for s in (store.get("validation_status") or []) + (results.get("failure") or []):
        if s.get("code") not in failures and s.get("code") != "signingCredential.untrusted":
            failures.append(s.get("code"))
    valid = state in ("Valid", "Trusted") and not failures
    gens = m.get("claim_generator_info") or []
    claim_generator = " ".join(_agent(g) for g in gens[:1]) or str(m.get("claim_generator") or "")
    actions = _actions(m)
    ai = next((_source_type(a.get("digitalSourceType")) for a in actions
               if _source_type(a.get("digitalSourceType")) in AI_SOURCE_TYPES), None)
    capture = any(_source_type(a.get("digitalSourceType")) in CAPTURE_SOURCE_TYPES for a in actions)
    created = next((a for a in actions if a.get("action") in ("c2pa.created", "c2pa.opened")), {})
    ingredients = m.get("ingredients") or []
    # An ingredient whose own manifest (in the same store) declares AI generation: a composite with AI content.
    ai_ingredient = any(
        _source_type(a.get("digitalSourceType")) in AI_SOURCE_TYPES
        for ing in ingredients if ing.get("active_manifest") in manifests
        for a in _actions(manifests[ing["active_manifest"]]))
    sig = m.get("signature_info") or {}
    return {
        "present": True, "state": state, "signature_valid": valid, "trusted": valid and state == "Trusted",
        "failures": failures, "claim_generator": claim_generator, "title": m.get("title"),
        "signer": sig.get("issuer") or sig.get("common_name"), "signed_at": sig.get("time"),
        "actions": [{k: a.get(k) for k in ("action", "digitalSourceType") if a.get(k)} |
                    ({"softwareAgent": _agent(a["softwareAgent"])} if a.get("softwareAgent") else {})
                    for a in actions],
        "agent": _agent(created.get("softwareAgent")) or None,
        "ai_generated": ai, "capture": capture, "ai_ingredient": ai_ingredient,
        "edits": sorted({a["action"].removeprefix("c2pa.") for a in actions
                         if a.get("action") not in ("c2pa.created", "c2pa.opened", None)}),
        "ingredients": [{"title": i.get("title"), "relationship": i.get("relationship")} for i in ingredients],
    }


def _actions(manifest: dict) -> list[dict]:
    return [a for asrt in manifest.get("assertions") or []
            if str(asrt.get("label", "")).startswith("c2pa.actions")
            for a in (asrt.get("data") or {}).get("actions") or [] if isinstance(a, dict)]


def _c2pa_format(head: bytes, c2pa) -> str | None:
    """The MIME type c2pa wants, from the first bytes (never the extension: the scan core reads types from bytes)."""
    if head.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/avi"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return ("image/heic" if brand in (b"heic", b"heix", b"mif1") else "image/avif" if brand == b"avif" else
                "video/quicktime" if brand == b"qt  " else "audio/mp4" if brand == b"M4A " else "video/mp4")
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    return None


def _open_image(path: Path):
    from PIL import Image

    try:
        img = Image.open(path)
        img.load()
        return img
    except Exception:  # the scan core decodes the file itself and reports what is wrong with it
        return None


def read_metadata(img) -> dict:
    """Generator metadata: PNG text chunks, Software/CreatorTool tags, an XMP DigitalSourceType."""
    if img is None:
        return {}
    info = {str(k): v for k, v in (img.info or {}).items()}
    # 'parameters' and 'prompt' are common words: they count only with the settings those tools always write.
    keys = [k for k in PNG_KEYS if isinstance(info.get(k), str) and info[k].strip()
            and (k != "parameters" or "Steps:" in info[k]) and (k != "prompt" or "class_type" in info[k])]
    out: dict[str, Any] = {}
    if keys:
        out["png_keys"] = keys
        detail = "a prompt and sampler settings" if keys[0] == "parameters" else "its generation settings"
        out.update(generator=PNG_KEYS[keys[0]], detail=f"{detail} in PNG text chunk{'s' if len(keys) > 1 else ''} "
                                                        + ", ".join(f"'{k}'" for k in keys))
    software = []
    if isinstance(info.get("Software"), str):
        software.append(info["Software"])
    try:
        exif_sw = img.getexif().get(305)  # EXIF Software
        if exif_sw:
            software.append(str(exif_sw))
    except Exception:
        pass
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp") or b""
    xmp = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)
    software += re.findall(r"CreatorTool(?:=\"|>)([^\"<]+)", xmp)
    if software:
        out["software"] = software
    known = next((s for s in software if any(g in s.lower() for g in KNOWN_GENERATORS)), None)
    if known and "generator" not in out:
        out.update(generator=known.strip(), detail="its Software tag")
    dst = [_source_type(v) for v in re.findall(r"DigitalSourceType(?:=\"|>)([^\"<]+)", xmp)]
    if dst:
        out["xmp_digital_source_type"] = dst[0]
        if dst[0] in AI_SOURCE_TYPES and "generator" not in out:
            out.update(generator="a generative-AI tool",
                       detail=f"XMP DigitalSourceType {dst[0]}, made {AI_SOURCE_TYPES[dst[0]]}")
    return out
