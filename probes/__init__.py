"""faceprobe's measuring side: face models, data, labellers, layer capture and measurements.

The one-call API for the common question sits here: :func:`verify` (are two faces the same person, at a
threshold measured for a stated false match rate) and :func:`embed` (templates of photos, detected and
aligned); see :mod:`probes.quick`. Nothing here downloads or loads weights at import time. This
package never imports :mod:`decoders` (the generating side depends on it, not the reverse).
"""

__version__ = "0.1.0"

from .quick import Verification, embed, verify  # noqa: E402

__all__ = ["Verification", "embed", "verify"]
