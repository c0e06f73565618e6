"""IPCGAN: identity-preserved conditional GAN for face aging (Wang et al., CVPR 2018).

The generator takes a face and a target age group (5 groups, 11-20 ... 50+,
given as 5 constant one-hot planes concatenated to the image channels) and
returns the face at that age. Its losses:

- **GAN** (least squares): a conditional discriminator sees image + condition
  planes; real faces with their own group are real, generated faces *and
  real faces shown with a wrong group* are fake (so D learns what each age
  looks like, not just what a face looks like);
- **identity**: 1 - cosine between the embeddings, by a frozen face-recognition
  backbone (:class:`~decoders.aging.identity.IdentityFeatures`, default
  ``dlib-resnet29``), of the input and the output. The paper used an L2
  between feature maps of a pretrained net; we use the embedding the audit
  also measures, with the cosine so the term is scale-free (0 = same
  direction). Input embeddings are cached per training face;
- **age**: cross entropy of a frozen, pretrained
  :class:`~decoders.aging.classifier.AgeGroupClassifier` on the output vs the
  target group.

Training goes through the shared :class:`~probes.training.Trainer`
(:class:`IPCGANTask`); ``python -m decoders.aging.train ipcgan ...`` is the
command. Differences from the paper, for CPU-sized runs (all in
:class:`IPCGANConfig`): 64 x 64 faces (128 optional); a smaller generator
whose output is the input plus a learned change (``residual``: it starts as
the identity map, so it draws faces from the first step and only has to learn
what aging changes); the group also sets the scale and shift of every
instance norm (instance norm alone erases constant condition planes); spectral
norm in D; an EMA copy of the generator is what is sampled and exported.

Modules: :mod:`.config` (:class:`IPCGANConfig`), :mod:`.networks` (generator,
discriminator), :mod:`.task` (:class:`IPCGANTask`, :func:`build_task`),
:mod:`.model` (:class:`IPCGANModel`, :func:`from_checkpoint`, :func:`load_ipcgan`).
"""

from .config import GROUPS, KIND, Config, IPCGANConfig
from .model import IPCGANModel, from_checkpoint, load_ipcgan
from .networks import (
    ConditionalInstanceNorm,
    IPCGANDiscriminator,
    IPCGANGenerator,
    build_discriminator,
    build_generator,
)
from .task import IPCGANTask, build_task

__all__ = ["GROUPS", "KIND", "Config", "ConditionalInstanceNorm", "IPCGANConfig", "IPCGANDiscriminator",
           "IPCGANGenerator", "IPCGANModel", "IPCGANTask", "build_discriminator", "build_generator", "build_task",
           "from_checkpoint", "load_ipcgan"]
