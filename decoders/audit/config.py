"""The audit's settings: :class:`AuditConfig`, the hyper-parameters of :class:`~decoders.audit.AgingAudit`.

They are stored as given; :meth:`AuditConfig.checked` (called by the audit's ``run``) normalises and
validates them, naming the setting at fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from probes.backbones import FaceBackbone
from probes.labellers import Labeller

from ..aging.data import UTKFACE_FRAME
from .sources import AuditError

DEFAULT_TRAIN_BACKBONE = "dlib-resnet29"
DEFAULT_INDEPENDENT_BACKBONE = "hse-mobilenet-vggface2"
EXPRESSIVITY_ATTRIBUTES = ("age", "sex", "yaw")


@dataclass(kw_only=True, eq=False)
class AuditConfig:
    """How an aging model is audited (all keyword):

    - ``train_backbone``: the face model the GAN was trained against (a name
      or a :class:`~probes.backbones.FaceBackbone`); None takes the model's
      ``identity_backbone`` attribute, else ``dlib-resnet29``.
    - ``independent_backbone``: a second face model that took no part in
      training (default ``hse-mobilenet-vggface2``).
    - ``age_labeller``: age/sex estimator other than the GAN's age loss (``hse-agegender``, the
      default, or ``faceapi-agegender``, or a labeller object). face-api's age/gender net was trained
      on UTKFace (its README: 80/20 split), the faces the GANs train and are audited on, so it is no
      independent judge there; HSE's heads are not known to have seen UTKFace (their authors report
      it as a test set), so they judge by default;
      ``pose_labeller``: yaw (``faceapi-headpose``; None skips yaw).
    - ``training_age_reader``: the pretrained age network the GAN was trained against (a labeller
      name or object); None takes the model's ``training_age_reader`` attribute, and without one
      the comparison is skipped. Every output is read by it too, beside the judge above.
    - ``fmrs``: false match rates; the first is the headline. Thresholds come
      from LFW's pairs.txt for each face model (``use_lfw``, ``data_root``,
      ``lfw_max_pairs``, ``cache_dir`` for LFW templates); when LFW is absent (or
      ``use_lfw=False``) from impostor pairs of the audited real faces; ``thresholds`` =
      ``{backbone name: {fmr: threshold score}}`` overrides both.
    - ``max_estimator_mae`` (years) and ``min_real_faces``: a target group is
      judged for achieved age only if the estimator's MAE on real faces of that
      group, measured in this run, is at most this and rests on enough faces.
    - ``collapse_fraction``: outputs are flagged collapsed when their mean
      LPIPS across inputs (same target) is under this fraction of the real
      faces'; ``target_fraction``: flagged as ignoring the target when the
      LPIPS between targets of one input is under this fraction of that
      between real faces of different age groups. ``lpips_net`` and ``lpips_pairs`` per comparison.
    - ``expressivity``: estimator name for the per-layer sweep (``probe``,
      ``mine``, ...; None skips), ``expressivity_params`` its parameters,
      ``expressivity_layers`` (default the tap layers) and ``expressivity_attributes``.
    - ``decoder``: a template decoder checkpoint (DFD); its reconstructions of
      original and aged templates go beside the images (``decoder_faces`` faces).
    - ``frechet_splits``: random splits of each group's real faces behind the Fréchet distances and their floor.
    - ``measure_size``: the frame every image is measured in; ``gallery_size``: source faces in the opening
      grid; ``flagged_size``: flagged outputs shown (all are listed in the ``flagged`` table);
      ``n_boot``: bootstrap replicates; ``seed``, ``batch_size``, ``device``, ``progress``.
    """

    train_backbone: str | FaceBackbone | None = None
    independent_backbone: str | FaceBackbone = DEFAULT_INDEPENDENT_BACKBONE
    age_labeller: str | Labeller = "hse-agegender"
    pose_labeller: str | Labeller | None = "faceapi-headpose"
    training_age_reader: str | Labeller | None = None
    fmrs: Sequence[float] = (1e-3,)
    thresholds: Mapping[str, Mapping[float, float]] | None = None
    data_root: str | Path | None = None
    use_lfw: bool = True
    lfw_max_pairs: int | None = None
    cache_dir: str | Path | bool | None = None
    max_estimator_mae: float = 8.0
    min_real_faces: int = 10
    collapse_fraction: float = 0.25
    target_fraction: float = 0.1
    lpips_net: str = "alex"
    lpips_pairs: int = 200
    expressivity: str | None = "probe"
    expressivity_params: Mapping | None = None
    expressivity_layers: Sequence[str] | None = None
    expressivity_attributes: Sequence[str] = EXPRESSIVITY_ATTRIBUTES
    decoder: str | Path | None = None
    decoder_faces: int = 64
    measure_size: int = UTKFACE_FRAME
    gallery_size: int = 12
    flagged_size: int = 24
    frechet_splits: int = 10
    n_boot: int = 1000
    seed: int = 0
    batch_size: int = 32
    device: str = "cpu"
    progress: bool = True

    def checked(self) -> AuditConfig:
        """A plain copy with numbers as int/float and sequences as tuples, validated (AuditError otherwise)."""
        values = {f.name: getattr(self, f.name) for f in fields(AuditConfig)}
        values["fmrs"] = tuple(float(f) for f in self.fmrs)
        for name in ("max_estimator_mae", "collapse_fraction", "target_fraction"):
            values[name] = float(values[name])
        for name in ("min_real_faces", "lpips_pairs", "decoder_faces", "measure_size", "gallery_size", "flagged_size",
                     "frechet_splits", "n_boot", "seed", "batch_size"):
            values[name] = int(values[name])
        values["expressivity_params"] = dict(self.expressivity_params or {})
        values["expressivity_attributes"] = tuple(self.expressivity_attributes)
        config = AuditConfig(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Refuse settings out of range (on a :meth:`checked` copy: numbers already converted)."""
        if not self.fmrs or not all(0 < f < 1 for f in self.fmrs):
            raise AuditError(f"--fmr values must lie in (0, 1), got {self.fmrs}")
        for name in ("collapse_fraction", "target_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise AuditError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.max_estimator_mae <= 0:
            raise AuditError(f"--max-estimator-mae must be positive, got {self.max_estimator_mae}")
        for name in ("lpips_pairs", "batch_size", "measure_size", "frechet_splits"):
            if getattr(self, name) < 1:
                raise AuditError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("gallery_size", "flagged_size", "decoder_faces", "n_boot"):
            if getattr(self, name) < 0:
                raise AuditError(f"{name} must be >= 0, got {getattr(self, name)}")
        bad = [a for a in self.expressivity_attributes if a not in EXPRESSIVITY_ATTRIBUTES]
        if bad:
            raise AuditError(f"expressivity attributes {bad} unknown; choose from {', '.join(EXPRESSIVITY_ATTRIBUTES)}")
