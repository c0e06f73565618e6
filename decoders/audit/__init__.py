"""Audit a face-aging model through face models: ``python -m decoders.audit``.

>>> from decoders.audit import AgingAudit, reference_model
>>> result = AgingAudit(max_estimator_mae=8).run(model, faces)      # doctest: +SKIP
>>> result.headline(); result.tables["summary"]; result.save("audit/")  # doctest: +SKIP

For each target age group, broken down by sex, race, source age group (and age
gap), with 95% intervals: identity kept (verification at a fixed FMR and
cosine, by the GAN's training face model and an independent one), the age the
outputs reach (by an age estimator other than the GAN's, with groups it cannot
judge flagged), attribute drift (sex, yaw), diversity / collapse (LPIPS), and
what the face model's layers encode of originals vs aged faces; optionally a
template decoder's reconstructions of aged templates.
"""

from .core import AgingAudit, AuditResult
from .references import (
           CollapsedAging,
           FunctionAging,
           collapsed,
           identity,
           reference_model,
           synthetic_face,
)
from .sources import AuditError, FolderAging, check_output, load_generator, select_faces

__all__ = ["AgingAudit", "AuditError", "AuditResult", "CollapsedAging", "FolderAging", "FunctionAging",
           "check_output", "collapsed", "identity", "load_generator", "reference_model", "select_faces",
           "synthetic_face"]
