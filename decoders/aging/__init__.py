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

__all__ = ["AGECGAN_GROUPS", "IPCGAN_GROUPS", "AgeGroups", "AgingError", "AgingModel", "check_faces",
           "load_aging_model"]


def __getattr__(name):
    # Loading models needs torch: import it on first use, not with the package.
    if name == "load_aging_model":
        from .models import load_aging_model

        return load_aging_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
