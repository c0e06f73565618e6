"""faceprobe's measuring side: face models, data, labellers, layer capture and measurements.

Nothing here downloads or loads weights at import time. This package never
imports :mod:`decoders` (the generating side depends on it, not the reverse).
"""

__version__ = "0.1.0"
