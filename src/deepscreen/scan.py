"""The scan core: path -> Verdict. The CLI, the service and batch jobs all call this and nothing else.

Two steps, so a batch engine can run them on different workers (Prepared pickles):
  prepare(path) -> Prepared: media (read once: media.source) -> faces (detect, align, track); sound -> speech
      (media.speech); the file's own provenance declarations. CPU work, no detector network.
  judge(prepared) -> Verdict: the detectors score the crops and the speech windows (detectors.DetectorResult),
      and fusion.build_verdict makes the verdict of their results.
`scan(path)` is judge(prepare(path)). A `Scanner` loads its models once; `scan()` keeps one per process for
callers that don't manage their own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from . import fusion
from .config import ScanConfig
from .detectors import DEFAULT_DETECTORS, FaceDetector, load_detector
from .faces.align import align_face
from .faces.detect import FaceAnalyzer
from .faces.track import FaceTracker
from .media import MediaError, sample_times
from .media.audio import SAMPLE_RATE
from .media.errors import label, media_error, shown_path
from .media.prefetch import prefetched
from .media.sniff import access_problem
from .media.source import MediaFile
from .media.speech import SpeechFinder
from .prepared import HELD_SOUND_S, FaceCrop, Prepared, Sound
from .verdict import Verdict

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
        # MediaPipe graphs and torch modules are shared state: one file at a time in each step (a prepare and a
        # judge may overlap, in two threads).
        self._prepare_lock, self._judge_lock = threading.Lock(), threading.Lock()

    def models(self):
        return [m for d in self.detectors for m in d.models()]

    def scan(self, path: str | os.PathLike, on_frame: Callable[[int, int], None] | None = None) -> Verdict:
        """Scan one file. Bad input never raises: it comes back as a Verdict with label 'error'."""
        return self.judge(self.prepare(path, on_frame))

    def scan_many(self, paths: Iterable[Path]) -> Iterator[Verdict]:
        for path in paths:
            yield self.scan(path)

    def prepare(self, path: str | os.PathLike, on_frame: Callable[[int, int], None] | None = None) -> Prepared:
        """Decode the file and find its faces and speech. Never raises: what is wrong with the file is
        Prepared.error. `on_frame(done, expected)` after each analysed frame (progress bars)."""
        path = Path(path)
        started = time.perf_counter()
        prepared = Prepared(path)
        try:
            with self._prepare_lock:
                self._prepare(prepared, on_frame)
        except MemoryError:
            prepared.error = f"{label(path)}: out of memory while decoding (lower the limits or the sampling)"
        except Exception as err:
            prepared.error = _error_line(path, err)
        if prepared.error:
            prepared.crops, prepared.sound = [], None
        prepared.elapsed_s = time.perf_counter() - started
        return prepared

    def judge(self, prepared: Prepared) -> Verdict:
        """Score a prepared file with the detectors and build its verdict (fusion.build_verdict). Never raises."""
        started = time.perf_counter()
        path, timings, error = prepared.path, dict(prepared.timings), prepared.error
        verdict = None
        if not error:
            try:
                with self._judge_lock:
                    verdict = self._judge(prepared, timings)
            except MemoryError:
                error = f"{label(path)}: out of memory while scoring (lower the limits or the sampling)"
            except Exception as err:
                error = _error_line(path, err)
        if verdict is None:
            verdict = Verdict(str(path), "", "unknown", None, "error", error, error=error)
        verdict.thresholds = self.config.thresholds
        verdict.timings = timings
        verdict.elapsed_s = prepared.elapsed_s + time.perf_counter() - started
        # Every front end writes the path to UTF-8 (JSON, HTML, a database): a name with undecodable bytes is
        # shown with backslash escapes, and the verdict says so.
        verdict.path, verdict.path_escaped = shown_path(path)
        return verdict

    # ---- prepare ------------------------------------------------------------------------------------------------

    def _prepare(self, prepared: Prepared, on_frame) -> None:
        path, cfg, timings = prepared.path, self.config, prepared.timings
        _refuse_folder(path)
        with MediaFile(path, cfg.limits) as media:
            info = prepared.info = media.info
            if info.kind == "audio" and not self.voice_detector:
                raise media_error(path, "is an audio file; no voice detector loaded")
            if info.kind != "audio":
                if not self.face_detectors:
                    raise media_error(path, f"{info.kind} file, but no face detector is loaded")
                self._find_faces(prepared, media, on_frame)
            if info.has_audio and self.voice_detector:
                prepared.sound = self._find_speech(prepared, media)
            prepared.sha256 = media.sha256
        if self.provenance:
            with _stage(timings, "provenance"):
                prepared.provenance = self.provenance.find(path, info.kind)

    def _find_faces(self, prepared: Prepared, media: MediaFile, on_frame) -> None:
        """Faces of the sampled frames, aligned and tracked: full detection on every n-th frame, in between the
        landmark model follows the last frame's faces."""
        cfg, info, timings = self.config, media.info, prepared.timings
        tracker = FaceTracker()
        faces: list = []  # of the last analysed frame, followed into the next one
        expected = (info.frame_count or 1) if cfg.sampling.all_frames or info.kind == "image" else \
            len(sample_times(info.duration_s or 0.0, cfg.sampling))
        for frame in prefetched(_timed(media.frames(cfg.sampling), timings, "decode")):
            with _stage(timings, "faces"):
                follow = faces if len(prepared.sampled) % cfg.sampling.redetect_every else None
                prepared.sampled.append((frame.index, frame.time_s))
                faces = [f for f in self.analyzer(frame.rgb, follow) if f.landmarks is not None]
                if faces:
                    ids = tracker.update(frame.index, [f.box for f in faces])
                    prepared.crops += [_aligned(frame, face, ids[k]) for k, face in enumerate(faces)]
            if on_frame:
                on_frame(len(prepared.sampled), expected)

    def _find_speech(self, prepared: Prepared, media: MediaFile) -> Sound:
        """Decode the sound a block at a time and find the speech in it. The samples are kept for `judge` while
        the track is short (HELD_SOUND_S); a longer one is decoded again there, so memory stays flat over hours.
        A video whose sound track is damaged keeps its face verdict: the voice detector abstains and says why; an
        audio file with no decodable sound is an error."""
        held: list[np.ndarray] | None = []
        cap = int(HELD_SOUND_S * SAMPLE_RATE)

        def keep(blocks):
            nonlocal held
            for block in blocks:
                if held is not None:
                    held.append(block)
                    if sum(map(len, held)) > cap:
                        held = None
                yield block

        timings = prepared.timings
        try:
            blocks = _timed(media.sound().blocks(), timings, "decode")
            with _stage(timings, "speech", exclude="decode"):
                probs, n_samples = self.speech.stream_probabilities(keep(blocks))
                segments = self.speech.segments(probs)
        except MediaError as err:
            if prepared.info.kind == "audio":
                raise
            return Sound(problem=str(err).split(": ", 1)[-1])
        samples = np.concatenate(held) if held and segments else None
        return Sound(n_samples, segments, samples)

    # ---- judge --------------------------------------------------------------------------------------------------

    def _judge(self, prepared: Prepared, timings: dict[str, float]) -> Verdict:
        info, face, voice, provenance = prepared.info, None, None, None
        if info.kind != "audio":
            detector = self.face_detectors[0]  # one face detector today; fusion of several comes with issue #4
            crops = np.stack([c.crop for c in prepared.crops]) if prepared.crops else np.zeros((0, 1, 1, 3), np.uint8)
            with _stage(timings, "face_cnn"):
                # One look at each face in a photo: score its mirror image too (FaceDetector.score_mirrored).
                face = detector.judge(crops, mirror=info.kind == "image")
        if prepared.sound is not None:
            with _stage(timings, "voice"):
                voice = self._voice(prepared)
        if self.provenance and prepared.provenance is not None:
            with _stage(timings, "provenance"):
                provenance = self.provenance.judge(dict(prepared.provenance))
        with _stage(timings, "fusion"):
            return fusion.build_verdict(prepared, face, voice, provenance, self.config.thresholds,
                                        self.config.keep_crops)

    def _voice(self, prepared: Prepared):
        sound, detector = prepared.sound, self.voice_detector
        if sound.problem:
            return detector.result(np.zeros(0), spans_s=np.zeros((0, 2)), abstained=sound.problem)
        try:
            blocks = sound.blocks(prepared.path, self.config.limits, prepared.info.format)
            return detector.judge(blocks, sound.n_samples, sound.segments)
        except MediaError as err:  # the second read of a long sound track failed
            if prepared.info.kind == "audio":
                raise
            return detector.result(np.zeros(0), spans_s=np.zeros((0, 2)), abstained=str(err).split(": ", 1)[-1])


def _refuse_folder(path: Path) -> None:
    try:
        is_dir = path.is_dir()
    except (OSError, ValueError):  # too long, NUL byte: sniffing it says what is wrong
        return
    if is_dir:
        try:
            os.scandir(path).close()
        except PermissionError:
            raise media_error(path, "permission denied (cannot list the folder)") from None
        except OSError as exc:
            raise media_error(path, access_problem(path, exc)) from None
        raise media_error(path, "folder contains no files to scan")


def _error_line(path: Path, err: Exception) -> str:
    if isinstance(err, MediaError):
        return str(err)
    # a bug or a decoder crash on one file must not lose the rest of a batch
    log.exception("unexpected error scanning %s", path)
    return " ".join(f"{label(path)}: unexpected error ({type(err).__name__}: {err})".split())


def _aligned(frame, face, track_id: int) -> FaceCrop:
    crop, m = align_face(frame.rgb, face.landmarks)
    box = tuple(int(round(v)) for v in face.box)
    return FaceCrop(track_id, frame.index, frame.time_s, box, crop, face.landmarks @ m[:, :2].T + m[:, 2],
                    sharpness(crop))


def sharpness(crop: np.ndarray) -> float:
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


@contextlib.contextmanager
def _stage(timings: dict[str, float], name: str, exclude: str | None = None):
    """Add the time spent inside to timings[name] (ms), less what timings[exclude] gained meanwhile (a stage
    that pulls its input through a timed decoder)."""
    started, before = time.perf_counter(), timings.get(exclude, 0.0) if exclude else 0.0
    try:
        yield
    finally:
        inner = (timings.get(exclude, 0.0) - before) if exclude else 0.0
        timings[name] = timings.get(name, 0.0) + (time.perf_counter() - started) * 1000 - inner


def _timed(items: Iterable, timings: dict[str, float], name: str) -> Iterator:
    """`items`, the time spent producing each added to timings[name] (ms), in whichever thread pulls them."""
    items = iter(items)
    try:
        while True:
            started = time.perf_counter()
            try:
                item = next(items)
            finally:
                timings[name] = timings.get(name, 0.0) + (time.perf_counter() - started) * 1000
            yield item
    except StopIteration:
        return
    finally:
        close = getattr(items, "close", None)
        if close:
            close()


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
