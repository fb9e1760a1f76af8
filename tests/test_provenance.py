"""Provenance (detectors/provenance.py) on files the tests make: C2PA manifests signed here with a throw-away CA,
Stable Diffusion / SDXL watermarks embedded the way SD does, generator PNG chunks and EXIF tags. Nothing is
downloaded; the C2PA recipe follows ../shared/MODELS.md section 6."""

from __future__ import annotations

import datetime as dt
import io
import json

import numpy as np
import pytest
from PIL import Image

c2pa = pytest.importorskip("c2pa")
pytest.importorskip("imwatermark")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from deepscreen import fusion  # noqa: E402
from deepscreen.detectors.provenance import SDXL_BITS, Provenance, read_metadata  # noqa: E402

AI = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"


def _picture(seed=0, size=512) -> np.ndarray:
    """A smooth picture with some texture (a watermark hides in mid frequencies; flat noise is not a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([128 + 70 * np.sin(6 * x + seed), 128 + 70 * np.cos(5 * y), 128 + 50 * np.sin(4 * (x + y))], -1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def _jpeg(seed=0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_picture(seed)).save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def signer():
    """(c2pa signer, CA PEM): a CA and an ES256 leaf made here. A lone self-signed leaf is refused by c2pa, and the
    leaf needs the AuthorityKeyIdentifier extension (MODELS.md section 6)."""
    now = dt.datetime.now(dt.timezone.utc)

    def cert(subject, issuer, pub, sign_key, ca):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False))
        if ca:
            b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
        else:
            b = (b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
                 .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
                 .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(sign_key.public_key()), False))
        return b.sign(sign_key, hashes.SHA256())

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deepscreen tests")])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert(name("test CA"), name("test CA"), ca_key.public_key(), ca_key, True)
    leaf = cert(name("test signer"), name("test CA"), key.public_key(), ca_key, False)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    s = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, pem(leaf) + pem(ca), key_pem, None))
    return s, pem(ca).decode()


def _sign(signer, source_type: str, agent: str, media: bytes | None = None, mime: str = "image/jpeg",
          title: str = "picture.jpg") -> bytes:
    """`media` (a JPEG made here if not given) with a signed manifest: created by `agent`, of `source_type`."""
    manifest = {"claim_generator_info": [{"name": "deepscreen-tests", "version": "0.1"}], "title": title,
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": source_type, "softwareAgent": {"name": agent}}]}}]}
    out = io.BytesIO()
    with c2pa.Builder(manifest) as b:
        b.sign(signer[0], mime, io.BytesIO(media or _jpeg()), out)
    return out.getvalue()


def _read(tmp_path, data: bytes, trusted_ca: str | None = None, name="f.jpg"):
    path = tmp_path / name
    path.write_bytes(data)
    return Provenance(trust_anchors=trusted_ca).read(path, "image")


# ---- C2PA ------------------------------------------------------------------------------------------------------

def test_valid_ai_manifest_is_decisive_and_says_so(tmp_path, signer):
    data = _sign(signer, AI, "Imaginator Diffusion")
    ev, found = _read(tmp_path, data, trusted_ca=signer[1])
    c = found["c2pa"]
    assert c["present"] and c["signature_valid"] and c["trusted"] and c["state"] == "Trusted"
    assert c["ai_generated"] == "trainedAlgorithmicMedia" and c["claim_generator"].startswith("deepscreen-tests")
    assert ev.detector == "provenance" and ev.score == pytest.approx(0.99)
    assert ev.explanation.startswith("Content Credentials say: created by Imaginator Diffusion with a trained model")
    # Without the CA on the trust list the signature still validates: still an AI declaration, scored a little lower.
    ev2, found2 = _read(tmp_path, data)
    assert found2["c2pa"]["signature_valid"] and not found2["c2pa"]["trusted"] and ev2.score == pytest.approx(0.97)
    assert "not on a trust list" in ev2.explanation


def test_valid_capture_manifest_is_evidence_of_authenticity_only_when_trusted(tmp_path, signer):
    data = _sign(signer, CAPTURE, "Test Camera X1")
    ev, found = _read(tmp_path, data, trusted_ca=signer[1])
    assert found["c2pa"]["capture"] and not found["c2pa"]["ai_generated"] and not found["declares_ai"]
    assert ev.score == pytest.approx(0.05) and "captured by Test Camera X1" in ev.explanation
    # An untrusted signer's "a camera took this" can be written by anyone: reported, not scored.
    ev2, _ = _read(tmp_path, data)
    assert ev2.score is None and "cannot be checked" in ev2.explanation


def test_ai_ingredient_of_an_edited_file_is_reported(tmp_path, signer):
    """An edit of an AI-generated picture: its own manifest declares only an edit, but the ingredient's manifest,
    carried along in the store, declares a trained model."""
    generated = _sign(signer, AI, "Imaginator Diffusion")
    manifest = {"claim_generator_info": [{"name": "PhotoEditor", "version": "9"}], "title": "edited.jpg",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.opened", "parameters": {"ingredientIds": ["generated"]}},
                    {"action": "c2pa.color_adjustments"}]}}]}
    out = io.BytesIO()
    with c2pa.Builder(manifest) as b:
        b.add_ingredient({"title": "generated.jpg", "relationship": "parentOf", "label": "generated"}, "image/jpeg",
                         io.BytesIO(generated))
        b.sign(signer[0], "image/jpeg", io.BytesIO(_jpeg(7)), out)
    ev, found = _read(tmp_path, out.getvalue(), trusted_ca=signer[1])
    c = found["c2pa"]
    assert c["signature_valid"] and not c["ai_generated"] and c["ai_ingredient"]
    assert c["ingredients"] == [{"title": "generated.jpg", "relationship": "parentOf"}]
    assert found["declares_ai"] and ev.score == pytest.approx(0.97) and "an ingredient" in ev.explanation


def test_tampered_file_no_longer_validates(tmp_path, signer):
    data = bytearray(_sign(signer, AI, "Imaginator Diffusion"))
    assert data[-2:] == b"\xff\xd9"
    data[-300] ^= 0x55  # a byte of the picture, after signing: the manifest's hash of the file no longer matches
    ev, found = _read(tmp_path, bytes(data), trusted_ca=signer[1])
    c = found["c2pa"]
    assert c["present"] and not c["signature_valid"] and "assertion.dataHash.mismatch" in c["failures"]
    assert ev.score is None and found["score"] is None and not found["declares_ai"]
    assert "do not validate" in ev.explanation and "changed after it was signed" in ev.explanation


def test_stripped_manifest_is_no_evidence(tmp_path, signer):
    signed = _sign(signer, AI, "Imaginator Diffusion")
    buf = io.BytesIO()
    Image.open(io.BytesIO(signed)).save(buf, "JPEG", quality=92)  # what most re-encoders and platforms do
    ev, found = _read(tmp_path, buf.getvalue(), trusted_ca=signer[1])
    assert found["c2pa"] == {"present": False}
    assert ev is None and found["score"] is None and found["findings"] == []


def test_damaged_manifest_is_reported_broken(tmp_path, signer):
    data = bytearray(_sign(signer, AI, "Imaginator Diffusion"))
    at = data.find(b"c2pa.signature")  # inside the manifest store (JUMBF in APP11): the signature box's bytes
    assert at > 0
    for k in range(at + 40, at + 80):
        data[k] ^= 0xFF
    ev, found = _read(tmp_path, bytes(data), trusted_ca=signer[1])
    assert found["c2pa"]["present"] and not found["c2pa"]["signature_valid"]
    assert ev.score is None and "do not validate" in ev.explanation


# ---- watermarks ------------------------------------------------------------------------------------------------

def _png(rgb: np.ndarray, **text) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    for k, v in text.items():
        meta.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", pnginfo=meta)
    return buf.getvalue()


def _marked(kind: str) -> np.ndarray:
    """Embedded as SD does: the reference scripts' bytes (SD 1.x/2.x) or diffusers' 48 bits (SDXL), dwtDct, BGR."""
    import cv2
    from imwatermark import WatermarkEncoder

    enc = WatermarkEncoder()
    if kind == "sd1":
        enc.set_watermark("bytes", b"StableDiffusionV1")
    else:
        enc.set_watermark("bits", SDXL_BITS)
    bgr = cv2.cvtColor(_picture(3), cv2.COLOR_RGB2BGR)
    return cv2.cvtColor(enc.encode(bgr, "dwtDct"), cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("kind,name", [("sd1", "Stable Diffusion"), ("sdxl", "Stable Diffusion XL")])
def test_generator_watermark_present(tmp_path, kind, name):
    ev, found = _read(tmp_path, _png(_marked(kind)), name="m.png")
    assert found["watermark"]["found"] == name and found["declares_ai"]
    assert ev.score == pytest.approx(0.99) and f"invisible {name} watermark" in ev.explanation


def test_generator_watermark_absent(tmp_path):
    ev, found = _read(tmp_path, _png(_picture(3)), name="plain.png")
    wm = found["watermark"]
    assert wm["checked"] and wm["found"] is None
    # far from both thresholds, not just under them: chance agreement is about half the bits
    assert int(wm["sdxl_bits_matching"].split("/")[0]) < 34 and int(wm["sd1_bits_matching"].split("/")[0]) < 90
    assert ev is None


@pytest.mark.parametrize("kind", ["sd1", "sdxl", "plain"])
def test_fast_decoder_matches_imwatermark_bit_for_bit(kind):
    """The scanner decodes with a vectorised copy of imwatermark's dwtDct decoder; it must read the same bits,
    including on an odd-sized crop where blocks do not tile the picture."""
    import cv2
    from imwatermark import WatermarkDecoder

    from deepscreen.detectors.provenance import _dwtdct_block_bits, _dwtdct_decode

    rgb = (_picture(3) if kind == "plain" else _marked(kind))[:389, :507]
    bits = _dwtdct_block_bits(rgb)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for n in (136, 48):
        ref = np.asarray(WatermarkDecoder("bits", n).decode(bgr, "dwtDct"), np.uint8)
        assert np.array_equal(_dwtdct_decode(bits, n), ref)


def test_jpeg_is_not_decoded_for_a_watermark(tmp_path):
    # Even quality 100 (4:2:0 chroma) wipes the mark: a JPEG is "not checked", never "absent, so real".
    buf = io.BytesIO()
    Image.fromarray(_marked("sdxl")).save(buf, "JPEG", quality=100)
    ev, found = _read(tmp_path, buf.getvalue())
    assert found["watermark"]["checked"] is False and "JPEG" in found["watermark"]["note"] and ev is None


# ---- generator metadata ----------------------------------------------------------------------------------------

def test_a1111_and_comfyui_png_chunks(tmp_path):
    a1111 = "a portrait of a reporter\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512"
    ev, found = _read(tmp_path, _png(_picture(1), parameters=a1111), name="a.png")
    assert found["metadata"]["generator"].startswith("AUTOMATIC1111") and ev.score == pytest.approx(0.9)
    assert "prompt and sampler settings" in ev.explanation and "unsigned" in ev.explanation
    graph = json.dumps({"3": {"class_type": "KSampler", "inputs": {"steps": 20}}})
    ev, found = _read(tmp_path, _png(_picture(1), prompt=graph, workflow="{}"), name="c.png")
    assert found["metadata"]["generator"] == "ComfyUI" and found["metadata"]["png_keys"] == ["prompt", "workflow"]


def test_ordinary_text_chunks_are_not_generator_metadata(tmp_path):
    # the same key names, written by something else: no sampler settings, no node graph
    ev, found = _read(tmp_path, _png(_picture(1), parameters="exposure=1/60", prompt="hello", Software="GIMP 2.10"),
                      name="p.png")
    assert "generator" not in found["metadata"] and found["metadata"]["software"] == ["GIMP 2.10"] and ev is None


def test_exif_software_of_a_known_generator(tmp_path):
    exif = Image.Exif()
    exif[305] = "Adobe Firefly"
    buf = io.BytesIO()
    Image.fromarray(_picture(2)).save(buf, "JPEG", exif=exif)
    ev, found = _read(tmp_path, buf.getvalue())
    assert found["metadata"]["generator"] == "Adobe Firefly" and ev.score == pytest.approx(0.9)
    exif[305] = "Ver.1.02"  # camera firmware
    buf = io.BytesIO()
    Image.fromarray(_picture(2)).save(buf, "JPEG", exif=exif)
    assert read_metadata(Image.open(buf)).get("generator") is None


def test_xmp_digital_source_type_without_c2pa(tmp_path):
    # IPTC's field, written into XMP by some generators without any signed manifest
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
           f'Iptc4xmpExt:DigitalSourceType="{AI}"/></rdf:RDF></x:xmpmeta>')
    ev, found = _read(tmp_path, _png(_picture(4), **{"XML:com.adobe.xmp": xmp}), name="x.png")
    assert found["metadata"]["xmp_digital_source_type"] == "trainedAlgorithmicMedia"
    assert ev.score == pytest.approx(0.9) and "trained model" in ev.explanation


def test_an_unreadable_declaration_never_costs_the_verdict(tmp_path, monkeypatch):
    # A decoder failure on some odd file (forced here) becomes a note; the rest is still read and judged.
    from deepscreen.detectors import provenance

    monkeypatch.setattr(provenance, "_dwtdct_block_bits", lambda rgb: (_ for _ in ()).throw(ValueError("odd")))
    ev, found = _read(tmp_path, _png(_picture(1), parameters="x\nSteps: 20, Sampler: Euler"), name="o.png")
    assert found["watermark"] == {"checked": False, "note": "not read (ValueError: odd)"}
    assert ev.score == pytest.approx(0.9)  # the metadata was still read
    # and a 16-bit greyscale PNG, an unusual mode, is read without a note
    buf = io.BytesIO()
    Image.fromarray((np.arange(300 * 300).reshape(300, 300) % 65536).astype(np.uint16)).save(buf, "PNG")
    monkeypatch.undo()
    _, found = _read(tmp_path, buf.getvalue(), name="g16.png")
    assert found["watermark"]["checked"] and found["watermark"]["found"] is None


def test_the_decisive_finding_leads_the_words():
    """The summary quotes the first finding: with a broken manifest and a watermark, the watermark must lead."""
    found = {"c2pa": {"present": True, "signature_valid": False, "state": "Invalid"},
             "watermark": {"checked": True, "found": "Stable Diffusion XL"}, "metadata": {}}
    ev, out = Provenance().judge(found)
    assert out["findings"][0].startswith("An invisible Stable Diffusion XL watermark") and ev.score == 0.99
    assert "do not validate" in out["findings"][1]


# ---- fusion and the scan core ----------------------------------------------------------------------------------

def test_fusion_only_an_ai_declaration_moves_the_probability():
    ai = {"findings": ["Content Credentials say: created by X with a trained model."], "declares_ai": True,
          "score": 0.99}
    assert fusion.apply_provenance(0.1, "1 face analysed.", ai) == (0.99, ai["findings"][0] + " 1 face analysed.")
    assert fusion.apply_provenance(None, "No face.", ai)[0] == 0.99
    capture = {"findings": ["Content Credentials say: captured by C."], "declares_ai": False, "score": 0.05}
    assert fusion.apply_provenance(0.7, "s.", capture) == (0.7, "s. " + capture["findings"][0])
    nothing = {"findings": [], "declares_ai": False, "score": None}
    assert fusion.apply_provenance(0.3, "s.", nothing) == (0.3, "s.")
    assert fusion.apply_provenance(None, "s.", None) == (None, "s.")


@pytest.fixture(scope="module")
def scanner():
    from deepscreen.scan import Scanner

    return Scanner()


def test_scan_of_an_ai_declaring_file_is_manipulated(tmp_path, signer, scanner, monkeypatch):
    path = tmp_path / "generated.jpg"
    path.write_bytes(_sign(signer, AI, "Imaginator Diffusion"))
    v = scanner.scan(path)
    assert v.label == "manipulated" and v.probability >= 0.97
    assert v.summary.startswith("Content Credentials say: created by Imaginator Diffusion")
    assert [e.detector for e in v.evidence][-1] == "provenance" and v.provenance["c2pa"]["signature_valid"]
    assert v.to_dict()["provenance"]["c2pa"]["ai_generated"] == "trainedAlgorithmicMedia"
    # the trust list comes from $DEEPSCREEN_C2PA_TRUST_ANCHORS for scanners built without arguments
    ca = tmp_path / "ca.pem"
    ca.write_text(signer[1])
    monkeypatch.setenv("DEEPSCREEN_C2PA_TRUST_ANCHORS", str(ca))
    assert Provenance().read(path, "image")[0].score == pytest.approx(0.99)


def test_scan_of_a_plain_photo_has_no_provenance_score(tmp_path, scanner):
    path = tmp_path / "plain.jpg"
    path.write_bytes(_jpeg(5))
    v = scanner.scan(path)
    assert v.provenance is not None and v.provenance["score"] is None and v.provenance["c2pa"]["present"] is False
    assert v.provenance["watermark"]["checked"] is False  # a JPEG: see test_jpeg_is_not_decoded_for_a_watermark
    assert all(e.detector != "provenance" for e in v.evidence)
    assert v.label == "inconclusive" and v.probability is None  # no face, and no provenance is no evidence


def test_scan_of_a_signed_ai_voice_recording(tmp_path, signer, scanner):
    """c2pa reads WAV too: an audio file whose credentials declare a trained model is manipulated even where the
    voice detector abstains (here: two seconds of quiet noise, no speech)."""
    import wave

    raw = io.BytesIO()
    with wave.open(raw, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.random.default_rng(0).normal(0, 300, 32000)).astype("<i2").tobytes())
    path = tmp_path / "voice.wav"
    path.write_bytes(_sign(signer, AI, "VoiceMaker", raw.getvalue(), "audio/wav", "voice.wav"))
    v = scanner.scan(path)
    assert v.kind == "audio" and v.voice.probability is None
    assert v.label == "manipulated" and v.summary.startswith("Content Credentials say: created by VoiceMaker")
    assert [e.detector for e in v.evidence] == ["voice", "provenance"]


def test_report_has_a_provenance_section(tmp_path, signer, scanner):
    from deepscreen.report import render_html

    path = tmp_path / "generated.jpg"
    path.write_bytes(_sign(signer, AI, "Imaginator Diffusion"))
    plain = tmp_path / "plain.jpg"
    plain.write_bytes(_jpeg(6))
    page = render_html([scanner.scan(path), scanner.scan(plain)])
    assert page.count("<h3>Provenance</h3>") == 2
    assert "<li>Content Credentials say: created by Imaginator Diffusion" in page
    assert "this is no evidence either way" in page


def test_scan_of_a_signed_ai_video(tmp_path, signer, scanner):
    """MP4 credentials are read too: a faceless generated clip is manipulated on its declaration alone."""
    from media_factory import level_frames, write_video

    clip = write_video(tmp_path / "raw.mp4", level_frames(10, 64, 64), fps=10)
    path = tmp_path / "clip.mp4"
    path.write_bytes(_sign(signer, AI, "ClipMaker", clip.read_bytes(), "video/mp4", "clip.mp4"))
    v = scanner.scan(path)
    assert v.kind == "video" and not v.faces
    assert v.label == "manipulated" and v.summary.startswith("Content Credentials say: created by ClipMaker")
    assert "watermark" not in v.provenance  # pictures only
