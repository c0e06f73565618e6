"""Audit a face-aging model through face models: ``python -m decoders.audit``.

>>> from decoders.audit import AgingAudit, AgingSource, FaceSelection, reference_model
>>> model = AgingSource(generator="runs/ipcgan/checkpoints/latest.pt").load()       # doctest: +SKIP
>>> faces, how = FaceSelection(max_images=200).load(model, "runs/ipcgan/checkpoints/latest.pt")  # doctest: +SKIP
>>> result = AgingAudit(max_estimator_mae=8).run(model, faces, selection=how)  # doctest: +SKIP
>>> result.headline(); result.tables["summary"]; result.save("audit/")  # doctest: +SKIP

For each target age group, broken down by sex, race, source age group (and age
gap), with 95% intervals over source faces: identity kept (verification at a
fixed FMR and cosine, by the GAN's training face model and an independent one),
the age the outputs reach (by an age estimator other than the GAN's, with groups
it cannot judge flagged; beside the GAN's own training age reader when the model
names one), attribute drift (sex, yaw), diversity / collapse (LPIPS), realism
(Fréchet distances to real faces of the group, beside a floor), the flagged
outputs, and what the face model's layers encode of originals vs aged faces;
optionally a template decoder's reconstructions of aged templates.
"""

from .config import AuditConfig
from .core import AgingAudit
from .faces import FaceSelection, run_heldout, select_faces
from .references import (
    CollapsedAging,
    FunctionAging,
    collapsed,
    identity,
    reference_model,
    synthetic_face,
)
from .result import AuditResult
from .sources import AgingSource, AuditError, FolderAging, check_output, chosen_targets, load_generator

__all__ = ["AgingAudit", "AgingSource", "AuditConfig", "AuditError", "AuditResult", "CollapsedAging",
           "FaceSelection", "FolderAging", "FunctionAging", "check_output", "chosen_targets", "collapsed", "identity",
           "load_generator", "reference_model", "run_heldout", "select_faces", "synthetic_face"]
