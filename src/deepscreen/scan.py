"""The scan core: path -> Verdict. The CLI, the service and batch jobs all call this and nothing else.

media (decode, sample, limits) -> faces (detect, align, track) -> detectors -> fusion -> Verdict.
Sound (audio files, and the sound track of videos) goes media.audio -> media.speech -> the voice detector.
A `Scanner` loads its models once; `scan()` keeps one per process for callers that don't manage their own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import fusion
from .config import ScanConfig
from .detectors import DEFAULT_DETECTORS, FaceDetector, load_detector
from .media.sniff import access_problem, file_sha256
from .faces.align import align_face
from .faces.detect import FaceAnalyzer
from .faces.track import FaceTracker
from .media import MediaError, iter_frames, probe, sample_times
from .media.audio import AudioReader
from .media.errors import label, media_error, shown_path
from .media.prefetch import prefetched
from .media.speech import SpeechFinder
from .verdict import Evidence, FaceObservation, Verdict, VoiceAnalysis

log = logging.getLogger(__name__)


class Scanner:
    def __init__(self, config: ScanConfig | None = None, detectors: Iterable[str] = DEFAULT_DETECTORS):
        self.config = config or ScanConfig()
        self.detectors = [load_detector(name) for name in detectors]
        self.face_detectors = [d for d in self.detectors if isinstance(d, FaceDetector)]
        self.voice_detector = next((d for d in self.detectors if d.modality == "voice"), None)
        self.provenance = next((d for d in self.detectors if d.modality == "provenance"), None)
        self.analyzer = FaceAnalyzer(max_faces=self.config.max_faces) if self.face_detectors else None
        self.speech = SpeechFinder() if self.voice_detector else None
        self._lock = threading.Lock()  # MediaPipe graphs and torch modules are shared state

    def models(self):
        return [m for d in self.detectors for m in d.models()]

    def scan(self, path: str | os.PathLike, on_frame: Callable[[int, int], None] | None = None) -> Verdict:
        """Scan one file. Bad input never raises: it comes back as a Verdict with label 'error'."""
        path = Path(path)
        started = time.perf_counter()
        try:
            with self._lock:
                verdict = self._scan(path, on_frame)
        except MediaError as err:
            verdict = Verdict(str(path), "", "unknown", None, "error", str(err), error=str(err))
        except MemoryError:
            msg = f"{label(path)}: out of memory while decoding (lower the limits or the sampling)"
            verdict = Verdict(str(path), "", "unknown", None, "error", msg, error=msg)
        except Exception as err:  # a bug or a decoder crash on one file must not lose the rest of a batch
            log.exception("unexpected error scanning %s", path)
            msg = " ".join(f"{label(path)}: unexpected error ({type(err).__name__}: {err})".split())
            verdict = Verdict(str(path), "", "unknown", None, "error", msg, error=msg)
        verdict.elapsed_s = time.perf_counter() - started
        # Every front end writes the path to UTF-8 (JSON, HTML, a database): a name with undecodable bytes is
        # shown with backslash escapes, and the verdict says so.
        verdict.path, verdict.path_escaped = shown_path(path)
        return verdict

    def scan_many(self, paths: Iterable[Path]) -> Iterator[Verdict]:
        for path in paths:
            yield self.scan(path)

    def _scan(self, path: Path, on_frame) -> Verdict:
        cfg = self.config
        try:
            is_dir = path.is_dir()
        except (OSError, ValueError):  # too long, NUL byte: sniffing it below says what is wrong
            is_dir = False
        if is_dir:
            try:
                os.scandir(path).close()
            except PermissionError:
                raise media_error(path, "permission denied (cannot list the folder)") from None
            except OSError as exc:
                raise media_error(path, access_problem(path, exc)) from None
            raise media_error(path, "folder contains no files to scan")
        info = probe(path, cfg.limits)
        digest = file_sha256(path)
        if info.kind == "audio":
            return self._scan_audio(path, info, digest)
        if not self.face_detectors:
            raise media_error(path, f"{info.kind} file, but no face detector is loaded")
        detector = self.face_detectors[0]  # one face detector today; fusion of several comes with issue #4
        tracker = FaceTracker()
        faces: list = []  # of the last analysed frame, followed into the next one
        results: list[fusion.CropResult] = []
        sampled: list[tuple[int, float]] = []
        expected = (info.frame_count or 1) if cfg.sampling.all_frames or info.kind == "image" else \
            len(sample_times(info.duration_s or 0.0, cfg.sampling))
        # Crops wait for one CNN call per `detector.batch_size` of them: cheaper per crop than one call each, and
        # the wait is bounded (memory in --all-frames scans of long videos).
        pending: list[_Pending] = []
        mirror = info.kind == "image"  # one look at each face: score its mirror image too (FaceDetector.score_mirrored)
        for frame in prefetched(iter_frames(path, info, cfg.sampling, cfg.limits)):
            # Full detection on every n-th frame; in between the landmark model follows the last frame's faces.
            follow = faces if len(sampled) % cfg.sampling.redetect_every else None
            sampled.append((frame.index, frame.time_s))
            faces, crops = self._analyse_frame(frame, tracker, follow)
            pending += crops
            if len(pending) >= detector.batch_size:
                results += _score(pending, detector, mirror)
                pending = []
            if on_frame:
                on_frame(len(sampled), expected)
        results += _score(pending, detector, mirror)

        tracks, evidence = fusion.fuse_tracks(results, detector, cfg.thresholds, video=info.kind == "video")
        if not cfg.keep_crops:
            for t in tracks:
                t.peak_crop = t.peak_heatmap = None
        face_p = fusion.file_probability(tracks)
        if not tracks:
            evidence = [Evidence(d.name, d.version, None, "abstained: no face found") for d in self.face_detectors]
        summary = fusion.summarise(info.kind, face_p, tracks, cfg.thresholds, len(sampled))
        voice = None
        if info.kind == "video" and info.has_audio and self.voice_detector:
            voice = self._voice(path, soundtrack=True)
            evidence.append(Evidence(self.voice_detector.name, self.voice_detector.version, voice.probability,
                                     f"sound track: {voice.explanation}"))
            if voice.probability is not None:
                summary += " Voice: " + fusion.summarise_voice(voice.probability, voice, cfg.thresholds)
        probability = fusion.combine(face_p, voice)
        provenance = self._provenance(path, info.kind, evidence)
        probability, summary = fusion.apply_provenance(probability, summary, provenance)
        used = self.face_detectors + ([self.voice_detector] if voice else [])
        media = {**info.to_dict(), "frames_analysed": len(sampled), "faces_found": len(results)}
        return Verdict(
            path=str(path), sha256=digest, kind=info.kind, probability=probability,
            label=cfg.thresholds.label(probability), summary=summary,
            faces=tracks, timeline=fusion.timeline(results, sampled) if info.kind == "video" else [],
            evidence=evidence, models=[m for d in used for m in d.models()], media=media, voice=voice,
            cross_check=fusion.cross_check(face_p, voice, cfg.thresholds), provenance=provenance,
        )

    def _provenance(self, path: Path, kind: str, evidence: list[Evidence]) -> dict | None:
        """Read what the file declares about its origin; its Evidence is appended only when something was found
        (no provenance is no evidence)."""
        if not self.provenance:
            return None
        found, provenance = self.provenance.read(path, kind)
        if found:
            evidence.append(found)
        return provenance

    def _scan_audio(self, path: Path, info, digest: str) -> Verdict:
        if not self.voice_detector:
            raise media_error(path, "is an audio file; no voice detector loaded")
        voice = self._voice(path, soundtrack=False)
        d = self.voice_detector
        evidence = [Evidence(d.name, d.version, voice.probability, voice.explanation)]
        provenance = self._provenance(path, "audio", evidence)
        probability, summary = fusion.apply_provenance(
            voice.probability, fusion.summarise_voice(voice.probability, voice, self.config.thresholds), provenance)
        return Verdict(
            path=str(path), sha256=digest, kind="audio", probability=probability,
            label=self.config.thresholds.label(probability), summary=summary, evidence=evidence,
            models=d.models(), media={**info.to_dict(), "speech_s": round(voice.speech_s, 2)}, voice=voice,
            provenance=provenance,
        )

    def _voice(self, path: Path, soundtrack: bool) -> VoiceAnalysis:
        """Decode the sound, find the speech, score it. A video whose sound track is damaged keeps its face
        verdict: the voice detector abstains and says why; an audio file with no decodable sound is an error.

        The sound is decoded twice, a block at a time, instead of held whole: once for the speech finder and,
        if there is speech, once to cut the windows it marked (memory stays flat over hours of sound)."""
        reader = AudioReader(path, self.config.limits)
        try:
            probs, n_samples = self.speech.stream_probabilities(reader.blocks())
            return self.voice_detector.analyse_blocks(reader.blocks(), n_samples, self.speech.segments(probs))
        except MediaError as err:
            if not soundtrack:
                raise
            return VoiceAnalysis(None, 0.0, 0.0, explanation=f"abstained: {str(err).split(': ', 1)[-1]}")

    def _analyse_frame(self, frame, tracker: FaceTracker, follow) -> tuple[list, list[_Pending]]:
        """Faces of one frame, aligned and tracked; the CNN scores them later, in batches across frames."""
        faces = [f for f in self.analyzer(frame.rgb, follow) if f.landmarks is not None]
        if not faces:
            return faces, []
        ids = tracker.update(frame.index, [f.box for f in faces])
        out = []
        for k, face in enumerate(faces):
            crop, m = align_face(frame.rgb, face.landmarks)
            box = tuple(int(round(v)) for v in face.box)
            out.append(_Pending(ids[k], frame.index, frame.time_s, box, crop, face.landmarks @ m[:, :2].T + m[:, 2]))
        return faces, out


@dataclass
class _Pending:
    track_id: int
    frame_index: int
    time_s: float
    box: tuple[int, int, int, int]
    crop: np.ndarray
    landmarks: np.ndarray  # in crop pixels


def _score(pending: list[_Pending], detector: FaceDetector, mirror: bool) -> list[fusion.CropResult]:
    if not pending:
        return []
    crops = np.stack([p.crop for p in pending])
    scores = detector.score_mirrored(crops) if mirror else detector.score_faces(crops)
    return [
        fusion.CropResult(
            p.track_id,
            FaceObservation(p.frame_index, p.time_s, p.box, float(scores.probabilities[k]), float(scores.logits[k]),
                            sharpness(p.crop)),
            p.crop, scores.heatmaps[k], p.landmarks)
        for k, p in enumerate(pending)
    ]


def sharpness(crop: np.ndarray) -> float:
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


_default: Scanner | None = None
_default_lock = threading.Lock()


def default_scanner() -> Scanner:
    """The process-wide scanner: models load on first use, once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Scanner()
        return _default


def scan(path: str | os.PathLike, config: ScanConfig | None = None) -> Verdict:
    """Scan one photo or video: `deepscreen.scan("clip.mp4").probability`."""
    scanner = default_scanner() if config is None else Scanner(config)
    return scanner.scan(path)



def expand_paths(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files as given, folders walked recursively in sorted order (hidden files skipped). Never raises: what
    cannot be looked at (a path too long, a link loop, a folder that cannot be listed) is yielded as it is, and
    the scan turns it into an error of that one file. A folder with no files is yielded itself, so the scan
    reports it as an error instead of silently scanning nothing."""
    for p in map(Path, paths):
        try:
            is_dir = p.is_dir()
        except (OSError, ValueError):
            is_dir = False
        if not is_dir:
            yield p
            continue
        unlisted: list[Path] = []  # os.walk would skip a folder it cannot list without a word
        found = False
        for root, dirs, files in os.walk(p, onerror=lambda err: unlisted.append(Path(err.filename))):
            found |= bool(unlisted)
            while unlisted:
                yield unlisted.pop(0)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith("."):
                    found = True
                    yield Path(root) / name
        found |= bool(unlisted)
        yield from unlisted
        if not found:
            yield p
