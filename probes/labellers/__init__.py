"""Attribute labellers (age, sex, head pose, expression) for faces: a small registry and the face-api ports.

The registry imports no labeller; each built-in one registers itself when imported below.
"""

from .registry import (
                       Labeller,
                       LabellerSpec,
                       create_labeller,
                       get_labeller_spec,
                       list_labellers,
                       register_labeller,
)

__all__ = ["Labeller", "LabellerSpec", "create_labeller", "get_labeller_spec", "list_labellers",
           "register_labeller"]

# The built-in labellers register themselves on import.
from . import age_gender, expression, hse, pose  # noqa: E402,F401
