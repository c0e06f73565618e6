"""Attribute labellers (age, sex, head pose) for faces: a small registry and the face-api ports."""

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
