"""Face-aging GANs (IPCGAN, Age-cGAN) and the contract an aging function meets.

- :mod:`.groups`: the age groups and :class:`AgingModel`; :mod:`.data`: UTKFace faces at a GAN's size;
- :mod:`.ipcgan`, :mod:`.agecgan`: the GANs (config, networks, training task, trained model);
- :mod:`.blocks`: building blocks both GANs share; :mod:`.checks`: the checks they share;
- :mod:`.classifier`: the age-group classifier of IPCGAN's age loss; :mod:`.identity`: face embeddings
  for the identity terms; :mod:`.nets`: the older names of those three modules;
- :mod:`.models`: :func:`load_aging_model` for any GAN checkpoint; :mod:`.train`: the training command.
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
