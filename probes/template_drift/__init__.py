"""Template drift under image perturbations (the perturbation analysis of Križaj et al., EAAI 2024).

Every image is first turned into the backbone's own view of it
(:func:`backbone_view`): the crop for its layout, square padding and resize to
the network's input size, as RGB in [0, 1]. Perturbations act on that view, so
their strengths are in the units the network sees, and the reference template
is the template of the unperturbed view (strength 0 gives cosine 1 exactly).

Families (:data:`FAMILIES`; ``describe_families()`` lists them):

- ``rotation``: degrees about the view's centre, direction (+/-) drawn per image;
- ``translation``: pixels of the network input, direction drawn per image;
- ``scaling``: zoom factor about the centre (1 = none, < 1 shrinks the face);
- ``occlusion``: a square patch whose side is a fraction of the input side,
  centred on a face point (``eyes`` = one patch per eye, ``left_eye``,
  ``right_eye``, ``nose``, ``mouth``, ``centre``, ``random`` = drawn per image);
  points come from the backbone's ``align_template``;
- ``noise``: random +/-eps per pixel (the L-inf budget spent at random; the
  baseline for the attacks);
- ``fgsm``, ``pgd``: untargeted white-box attacks on the backbone that push
  the template away from the clean one within an L-inf ball of radius eps
  ([0, 1] pixel units); see :func:`fgsm` and :func:`pgd` for their objectives.

Per-image random choices come from ``seed`` and the family name only, so a
family gives the same images whatever else is measured.

>>> drift = TemplateDrift(backbone, threshold=-0.6)          # dlib: score = -L2
>>> table = drift.measure(images, "rotation", [0, 10, 20], layout="lfw")
>>> fig = plot_drift(table)

Modules: :mod:`.families` (families, positions, face points), :mod:`.transforms` (the view and the
perturbations), :mod:`.attacks` (FGSM, PGD), :mod:`.drift` (the measurement), :mod:`.summary`
(tables and figures).
"""

from .attacks import AttackSetup, fgsm, pgd
from .drift import DriftResult, TemplateDrift
from .families import (
    DEFAULT_POSITIONS,
    FAMILIES,
    OCCLUSION_POSITIONS,
    PADDINGS,
    PGD_STARTS,
    Family,
    PerturbationError,
    check_positions,
    describe_families,
    face_points,
    get_family,
)
from .summary import failure_strengths, plot_drift, summarise
from .transforms import affine, backbone_view, occlude, rotate, sign_noise, translate, zoom

__all__ = ["DEFAULT_POSITIONS", "FAMILIES", "OCCLUSION_POSITIONS", "PADDINGS", "PGD_STARTS", "AttackSetup",
           "DriftResult", "Family", "PerturbationError", "TemplateDrift", "affine", "backbone_view",
           "check_positions", "describe_families", "face_points", "failure_strengths", "fgsm", "get_family",
           "occlude", "pgd", "plot_drift", "rotate", "sign_noise", "summarise", "translate", "zoom"]
