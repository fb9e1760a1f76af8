"""One self-contained HTML report for people who are not engineers.

Everything is inline: CSS in a <style> block, face crops as PNG data: URIs, the timeline as SVG. No scripts,
no fonts, no links, nothing is fetched when the file is opened, so it can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import math
from datetime import datetime, timezone
from html import escape

import cv2
import numpy as np

from deepscreen.config import Thresholds
from deepscreen.verdict import FaceTrack, TimelinePoint, Verdict, percent

LABELS = ("authentic", "suspicious", "manipulated", "inconclusive", "error")
COLOURS = {"authentic": "#1e8e3e", "suspicious": "#e8a200", "manipulated": "#d93025",
           "inconclusive": "#80868b", "error": "#3c4043"}
MAX_FACES = 6

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f5f7;color:#202124;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
.wrap{max-width:960px;margin:0 auto;padding:16px}
h1{font-size:1.6em;margin:.2em 0}
h2{font-size:1.25em;margin:0 0 .4em;word-break:break-all}
h3{font-size:1em;margin:1em 0 .4em}
.card{background:#fff;border-radius:10px;padding:16px;margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.counts{display:flex;flex-wrap:wrap;gap:8px;margin:.6em 0}
.pill{border-radius:999px;padding:3px 12px;color:#fff;font-weight:600;font-size:.9em}
.badge{display:inline-block;border-radius:8px;padding:8px 16px;color:#fff;font-size:1.4em;font-weight:700;margin:.3em 0}
.badge small{font-size:.65em;font-weight:600;opacity:.9}
.summary{font-size:1.05em;margin:.4em 0}
.error{color:#b3261e;font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-word}
.muted{color:#5f6368;font-size:.9em}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:.4em 0;font-size:.92em}
dl.facts dt{color:#5f6368}
dl.facts dd{margin:0;word-break:break-all}
.faces{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
.face{border:1px solid #e0e0e0;border-radius:8px;padding:8px}
.pair{display:flex;gap:6px}
.pair figure{margin:0;flex:1;text-align:center}
.pair img{width:100%;height:auto;border-radius:4px;image-rendering:auto}
figcaption{font-size:.75em;color:#5f6368}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #eee;vertical-align:top}
.scroll{overflow-x:auto}
svg.timeline{width:100%;height:auto;display:block}
.noimg{display:flex;align-items:center;justify-content:center;background:#eee;color:#5f6368;
 min-height:120px;border-radius:4px;font-size:.8em}
"""


# ---------------------------------------------------------------- small helpers


def _e(x: object) -> str:
    return escape(str(x), quote=True)


def _finite(p: float | None) -> float | None:
    try:
        return float(p) if p is not None and math.isfinite(float(p)) else None
    except (TypeError, ValueError):
        return None


def _label(v: Verdict) -> str:
    return v.label if v.label in COLOURS else "inconclusive"


def _order_key(v: Verdict) -> tuple[int, float]:
    """Most suspicious first: scored files by probability, then inconclusive, then errors."""
    if v.label == "error":
        return (2, 0.0)
    p = _finite(v.probability)
    return (1, 0.0) if p is None else (0, -p)


def _duration(s: float | None) -> str:
    s = _finite(s)
    if s is None:
        return "?"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


# ---------------------------------------------------------------- images


def _as_rgb_u8(img: object) -> np.ndarray | None:
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[2] < 3 or a.shape[0] < 1 or a.shape[1] < 1:
        return None
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = np.nan_to_num(a.astype(np.float32))
        if a.max() <= 1.0:
            a = a * 255.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def heat_overlay(crop_rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a JET-coloured heat map over the crop, weighted by the heat so cold areas stay clear."""
    h, w = crop_rgb.shape[:2]
    hm = np.nan_to_num(np.asarray(heat, dtype=np.float32))
    if hm.ndim == 3:
        hm = hm.mean(axis=2)
    hm = np.clip(cv2.resize(hm, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    colour = cv2.cvtColor(cv2.applyColorMap((hm * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    a = (alpha * hm)[..., None]
    out = crop_rgb.astype(np.float32) * (1 - a) + colour.astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def png_data_uri(rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


# ---------------------------------------------------------------- timeline chart


def _nice_step(span: float, target: int = 6) -> float:
    raw = max(span, 1e-9) / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def timeline_svg(points: list[TimelinePoint], th: Thresholds, width: int = 640, height: int = 220,
                 what: str = "manipulation", colour: str = "#1a73e8",
                 t_range: tuple[float, float] | None = None) -> str:
    """Probability over time as inline SVG; points without a score (no face, no speech) are gaps in the line.
    `t_range` puts several charts (face, voice) on one time axis so they can be read one under the other."""
    pts = sorted(points, key=lambda p: p.time_s)
    t0 = min((p.time_s for p in pts), default=0.0)
    t1 = max((p.time_s for p in pts), default=1.0)
    if t_range:
        t0, t1 = min(t0, t_range[0]), max(t1, t_range[1])
    if t1 - t0 < 1e-6:
        t0, t1 = t0 - 0.5, t1 + 0.5
    left, right, top, bottom = 44, 12, 12, 40
    pw, ph = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * pw

    def y(p: float) -> float:
        return top + (1.0 - p) * ph

    o = [f'<svg class="timeline" viewBox="0 0 {width} {height}" role="img" '
         f'aria-label="probability of {_e(what)} over time">',
         f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>']
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):  # y axis
        o.append(f'<text x="{left - 6}" y="{y(p) + 4:.1f}" font-size="11" text-anchor="end" fill="#5f6368">'
                 f'{p * 100:.0f}%</text>')
    step = _nice_step(t1 - t0)
    t = math.ceil(t0 / step) * step
    while t <= t1 + 1e-9:  # x axis
        o.append(f'<line x1="{x(t):.1f}" y1="{top + ph}" x2="{x(t):.1f}" y2="{top + ph + 4}" stroke="#999"/>'
                 f'<text x="{x(t):.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle" fill="#5f6368">'
                 f'{t:g}</text>')
        t += step
    o.append(f'<text x="{left + pw / 2}" y="{height - 4}" font-size="12" text-anchor="middle" fill="#202124">'
             'time (seconds)</text>')
    for thr, name in ((th.suspicious, "suspicious"), (th.manipulated, "manipulated")):
        o.append(f'<line x1="{left}" y1="{y(thr):.1f}" x2="{left + pw}" y2="{y(thr):.1f}" stroke="{COLOURS[name]}" '
                 f'stroke-dasharray="6 4" stroke-width="1.5"/>'
                 f'<text x="{left + pw - 4}" y="{y(thr) - 4:.1f}" font-size="10" text-anchor="end" '
                 f'fill="{COLOURS[name]}">{name} ≥ {thr * 100:.0f}%</text>')
    segments: list[list[tuple[float, float]]] = [[]]
    for p in pts:
        q = _finite(p.probability)
        if q is None:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append((x(p.time_s), y(min(max(q, 0.0), 1.0))))
    for seg in segments:
        if len(seg) > 1:
            coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in seg)
            o.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2" '
                     'stroke-linejoin="round"/>')
        for a, b in seg:
            o.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{colour}"/>')
    scored = [p for p in pts if _finite(p.probability) is not None]
    if scored:
        pk = max(scored, key=lambda p: float(p.probability))
        px, py = x(pk.time_s), y(min(max(float(pk.probability), 0.0), 1.0))
        anchor = "end" if px > left + pw * 0.75 else "start"
        dx = -8 if anchor == "end" else 8
        o.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="6" fill="none" stroke="#d93025" stroke-width="2"/>'
                 f'<text x="{px + dx:.1f}" y="{max(py - 8, top + 10):.1f}" font-size="11" text-anchor="{anchor}" '
                 f'fill="#d93025" font-weight="600">peak {percent(pk.probability)} at {pk.time_s:.1f} s</text>')
    o.append("</svg>")
    return "".join(o)


# ---------------------------------------------------------------- sections


def _face_card(f: FaceTrack) -> str:
    crop = _as_rgb_u8(f.peak_crop) if f.peak_crop is not None else None
    if crop is None:
        imgs = '<div class="noimg">no face crop kept</div>'
    else:
        imgs = f'<figure><img src="{png_data_uri(crop)}" alt="face {f.track_id}"><figcaption>face</figcaption></figure>'
        if f.peak_heatmap is not None and not f.abstained:  # a face not judged has no finding to point at
            over = heat_overlay(crop, f.peak_heatmap)
            imgs += (f'<figure><img src="{png_data_uri(over)}" alt="face {f.track_id} with heat map">'
                     '<figcaption>where the detector looked (red = most suspicious)</figcaption></figure>')
    box = ", ".join(_e(b) for b in f.box) if f.box is not None else "?"
    return (f'<div class="face"><div class="pair">{imgs}</div>'
            + (f'<div><b>Face {_e(f.track_id + 1)}</b> — not judged: {_e(f.abstained)}</div>' if f.abstained else
               f'<div><b>Face {_e(f.track_id + 1)}</b> — {percent(f.probability)} likely manipulated</div>')
            + f'<div class="muted">peak at {_finite(f.peak_time_s) or 0:.2f} s (frame {_e(f.peak_frame)}), '
            f'box x0,y0,x1,y1 = {box}</div></div>')


def _media_facts(v: Verdict) -> str:
    m = v.media or {}
    rows = [("kind", m.get("kind", v.kind))]
    if m.get("width") and m.get("height"):
        rows.append(("size", f"{m['width']} × {m['height']} px"))
    if m.get("duration_s") is not None:
        rows.append(("duration", _duration(m.get("duration_s"))))
    if m.get("fps"):
        rows.append(("frame rate", f"{_finite(m['fps']) or 0:.2f} fps"))
    analysed = next((m[k] for k in ("frames_analysed", "frames_analyzed", "analysed_frames") if k in m), None)
    if analysed is None and v.timeline:
        analysed = len(v.timeline)
    if analysed is not None:
        rows.append(("frames analysed", analysed))
    sha = v.sha256 or ""
    rows_html = "".join(f"<dt>{_e(k)}</dt><dd>{_e(val)}</dd>" for k, val in rows)
    rows_html += f'<dt>sha256</dt><dd><span title="{_e(sha)}">{_e(sha[:16])}{"…" if len(sha) > 16 else ""}</span></dd>'
    stages = " · ".join(f"{_e(k.replace('_', ' '))} {ms:.0f} ms" for k, ms in (v.timings or {}).items() if ms >= 0.5)
    stages = f' <span class="muted">({stages})</span>' if stages else ""
    rows_html += f"<dt>time taken</dt><dd>{_finite(v.elapsed_s) or 0:.1f} s{stages}</dd>"
    return f'<dl class="facts">{rows_html}</dl>'


def _voice_part(v: Verdict, th: Thresholds, span: tuple[float, float] | None) -> str:
    voice = v.voice
    if voice is None:
        return ""
    o = ["<h3>Voice</h3>", f"<p>{_e(voice.explanation)}</p>"]
    if voice.probability is not None and voice.timeline:
        o.append(timeline_svg(voice.timeline, th, what="a synthetic voice", colour="#8e24aa", t_range=span))
        o.append('<p class="muted">One point per second of speech; gaps are seconds without speech.</p>')
        rows = "".join(f"<tr><td>{s.start_s:.1f}–{s.end_s:.1f} s</td><td>{percent(s.probability)}</td>"
                       f"<td>{_e(th.label(s.probability).replace('manipulated', 'synthetic'))}</td></tr>"
                       for s in voice.segments)
        o.append('<div class="scroll"><table><tr><th>speech</th><th>P(synthetic)</th><th>reading</th></tr>'
                 f"{rows}</table></div>")
    return "".join(o)


def _provenance_part(v: Verdict) -> str:
    """What the file declares about its origin (detectors/provenance.py), or that it declares nothing: a reader
    should see that nothing was found is no evidence either way."""
    prov = v.provenance
    if not prov:
        return ""
    findings = prov.get("findings") or []
    if not findings:
        return ('<h3>Provenance</h3><p class="muted">No Content Credentials, generator watermark or generator '
                "metadata found. Most files carry none (platforms strip them): this is no evidence either way.</p>")
    return "<h3>Provenance</h3><ul>" + "".join(f"<li>{_e(f)}</li>" for f in findings) + "</ul>"


def _file_section(v: Verdict) -> str:
    th = v.thresholds
    lab = _label(v)
    name = v.path.replace("\\", "/").rsplit("/", 1)[-1] or v.path
    badge_p = "" if lab in ("error", "inconclusive") else f" <small>{percent(v.probability)} likely manipulated</small>"
    o = [f'<section class="card"><h2 title="{_e(v.path)}">{_e(name)}</h2>',
         f'<div class="badge" style="background:{COLOURS[lab]}">{_e(lab.upper())}{badge_p}</div>']
    if v.summary:
        o.append(f'<p class="summary">{_e(v.summary)}</p>')
    if v.error:
        o.append(f'<p class="error">Error: {_e(v.error)}</p>')
    o.append(_media_facts(v))
    if v.cross_check:
        o.append(f'<p class="error">Face and voice disagree: {_e(v.cross_check)}.</p>')
    duration = _finite((v.media or {}).get("duration_s"))
    span = (0.0, duration) if duration else None
    if v.timeline and v.kind == "video":
        o.append("<h3>Face: probability of manipulation over time</h3>" + timeline_svg(v.timeline, th, t_range=span))
        o.append('<p class="muted">Gaps are moments where no face was visible.</p>')
    o.append(_voice_part(v, th, span))
    o.append(_provenance_part(v))
    if v.faces:
        faces = sorted(v.faces, key=lambda f: -(_finite(f.probability) or 0.0))[:MAX_FACES]
        more = f" (showing {MAX_FACES} of {len(v.faces)})" if len(v.faces) > MAX_FACES else ""
        o.append(f"<h3>Faces{more}</h3><div class=\"faces\">" + "".join(_face_card(f) for f in faces) + "</div>")
    if v.evidence:
        # provenance with no score is a finding (a broken manifest, an untrusted claim), not an abstention
        unscored = {"provenance": "not scored"}
        rows = "".join(
            f"<tr><td>{_e(ev.detector)}</td><td>{_e(ev.version)}</td>"
            f"<td>{unscored.get(ev.detector, 'abstained') if _finite(ev.score) is None else percent(ev.score)}</td>"
            f"<td>{_e(ev.explanation)}</td></tr>"
            for ev in v.evidence)
        o.append('<h3>Evidence</h3><div class="scroll"><table><tr><th>detector</th><th>version</th><th>score</th>'
                 f"<th>what it found</th></tr>{rows}</table></div>")
    if v.models:
        rows = "".join(f'<tr><td>{_e(m.name)}</td><td>{_e(m.version)}</td>'
                       f'<td><span title="{_e(m.sha256)}">{_e(m.sha256[:12])}</span></td>'
                       f'<td>{_e(m.precision)} ({_e(m.runtime)})</td></tr>' for m in v.models)
        o.append('<h3>Models used</h3><div class="scroll"><table><tr><th>model</th><th>version</th>'
                 f"<th>weights sha256</th><th>arithmetic (runtime)</th></tr>{rows}</table></div>")
    o.append("</section>")
    return "".join(o)


def render_html(verdicts: list[Verdict], title: str = "deepscreen report") -> str:
    """The whole report as one HTML string: summary first, then one section per file, most suspicious first. The
    bands drawn on each file's plots, and stated at the top, are those its verdict was labelled with."""
    bands = list(dict.fromkeys(v.thresholds for v in verdicts)) or [Thresholds()]
    th = bands[0]
    mixed = (" (these files were labelled with different bands: each file's plots show its own)"
             if len(bands) > 1 else "")
    ordered = sorted(verdicts, key=_order_key)
    counts = {lab: sum(1 for v in verdicts if _label(v) == lab) for lab in LABELS}
    pills = "".join(f'<span class="pill" style="background:{COLOURS[lab]}">{counts[lab]} {lab}</span>'
                    for lab in LABELS)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    s, m = th.suspicious * 100, th.manipulated * 100
    head = (
        f'<section class="card"><h1>{_e(title)}</h1>'
        f"<div>{len(verdicts)} file{'s' if len(verdicts) != 1 else ''} scanned · generated {now}</div>"
        f'<div class="counts">{pills}</div>'
        "<p><b>How to read the numbers.</b> Each percentage is a calibrated probability that the file was "
        "manipulated: among files scored 0.8 (80%), about 8 in 10 were manipulated in our held-out tests. "
        "It is evidence to weigh, not proof.</p>"
        f"<p>Bands: <b style=\"color:{COLOURS['authentic']}\">authentic</b> below {s:.0f}% · "
        f"<b style=\"color:{COLOURS['suspicious']}\">suspicious</b> from {s:.0f}% to below {m:.0f}% · "
        f"<b style=\"color:{COLOURS['manipulated']}\">manipulated</b> from {m:.0f}% · "
        f"<b style=\"color:{COLOURS['inconclusive']}\">inconclusive</b> when no detector could judge "
        f"(for example no face found){mixed}.</p></section>"
    )
    body = "".join(_file_section(v) for v in ordered)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f'<body><main class="wrap">{head}{body}</main></body></html>\n'
    )
