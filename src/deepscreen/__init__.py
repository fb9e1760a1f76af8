"""deepscreen: a deepfake screener. `deepscreen.scan(path) -> Verdict` is the whole API most callers need."""

from .prepared import Prepared
from .scan import Scanner, expand_paths, scan
from .verdict import Evidence, FaceObservation, FaceTrack, ModelInfo, TimelinePoint, Verdict

__version__ = "0.1.0"
__all__ = ["Evidence", "FaceObservation", "FaceTrack", "ModelInfo", "Prepared", "Scanner", "TimelinePoint", "Verdict",
           "expand_paths", "scan"]
