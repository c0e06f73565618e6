"""Face-aging GANs (IPCGAN, Age-cGAN) and the contract an aging function meets.

See :mod:`decoders.aging.groups` for the age groups and :class:`AgingModel`.
"""

from .groups import (
    AGECGAN_GROUPS,
    IPCGAN_GROUPS,
    AgeGroups,
    AgingError,
    AgingModel,
    check_faces,
)
from .models import load_aging_model

__all__ = ["AGECGAN_GROUPS", "IPCGAN_GROUPS", "AgeGroups", "AgingError", "AgingModel", "check_faces",
           "load_aging_model"]
