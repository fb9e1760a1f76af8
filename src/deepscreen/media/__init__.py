"""Reading photos and videos safely: sniff by content, probe headers against limits, decode only sampled frames.

Every failure caused by the input is a MediaError with a one-line message that starts with the file name."""

from .errors import MediaError
from .image import read_image
from .info import Frame, MediaInfo
from .probe import probe
from .sniff import sniff
from .source import MediaFile
from .video import iter_frames, sample_times

__all__ = ["Frame", "MediaError", "MediaFile", "MediaInfo", "iter_frames", "probe", "read_image", "sample_times",
           "sniff"]
