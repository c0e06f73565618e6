"""Drawing templates with a decoder, and scoring the drawings: identity through the backbone, LPIPS, SSIM."""

from __future__ import annotations

import numpy as np
import torch

from probes.perceptual import perceptual_distance
from probes.verification import pair_scores

from .model import FaceDecoder


@torch.no_grad()
def decode(decoder: FaceDecoder, templates: np.ndarray, batch_size: int = 64) -> torch.Tensor:
    """Reconstructions of N x d templates: N x 3 x S x S float in [0, 1], on the CPU."""
    device = next(decoder.parameters()).device
    was = decoder.training
    decoder.eval()
    try:
        out = [decoder(torch.as_tensor(np.asarray(templates[i:i + batch_size]), dtype=torch.float32,
                                       device=device)).float().cpu()
               for i in range(0, len(templates), batch_size)]
    finally:
        decoder.train(was)
    return torch.cat(out)


@torch.no_grad()
def embed_chips(backbone, images_u8: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Templates of decoder-sized chips (uint8 N x S x S x 3) through ``backbone.forward(x, "chip")``.

    The same path as training's identity loss and validation, whatever the
    decoder size (``FaceBackbone.embed`` may refuse chips far below the
    network's input size; a 64 px decoder is still a valid configuration).
    """
    device = next(backbone.parameters()).device
    was = backbone.training
    backbone.eval()
    out = []
    try:
        for i in range(0, len(images_u8), batch_size):
            x = torch.from_numpy(np.array(images_u8[i:i + batch_size])).to(device).permute(0, 3, 1, 2).float() / 255
            out.append(backbone(x, "chip").float().cpu())
    finally:
        backbone.train(was)
    if not out:
        return np.zeros((0, backbone.spec.embedding_size), np.float32)
    return torch.cat(out).numpy()


def identity_scores(backbone, recon_u8: np.ndarray, templates: np.ndarray, batch_size: int = 64) -> dict:
    """Template of each reconstruction (fed as a ``chip``) against ``templates``: cosine, L2, and the
    backbone's verification score (cosine, or -L2 for distance-rule nets)."""
    emb = embed_chips(backbone, recon_u8, batch_size)
    cosine = pair_scores(emb, templates, "cosine")
    l2 = -pair_scores(emb, templates, "euclidean")
    metric = backbone.spec.verification_metric
    return {"embeddings": emb, "cosine": cosine, "l2": l2, "score": cosine if metric == "cosine" else -l2}


def lpips_scores(recon_u8: np.ndarray, originals_u8: np.ndarray, net: str = "alex",
                 device: str | torch.device = "cpu", batch_size: int = 32) -> np.ndarray:
    """LPIPS (``probes.perceptual``) between each reconstruction and its original, both uint8 N x H x W x 3."""
    out = []
    with torch.no_grad():
        for i in range(0, len(recon_u8), batch_size):
            # np.array copies: the originals may be a read-only memory map of the template cache.
            a = torch.from_numpy(np.array(recon_u8[i:i + batch_size])).permute(0, 3, 1, 2).float() / 255
            b = torch.from_numpy(np.array(originals_u8[i:i + batch_size])).permute(0, 3, 1, 2).float() / 255
            out.append(perceptual_distance(a, b, net=net, device=device).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def ssim_scores(images_a: np.ndarray, images_b: np.ndarray) -> np.ndarray:
    """SSIM (scikit-image, RGB with ``channel_axis=-1``, ``data_range=1``) of uint8 N x H x W x 3 pairs."""
    from skimage.metrics import structural_similarity  # heavy, and only the attack evaluation needs it

    a, b = np.asarray(images_a), np.asarray(images_b)
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"SSIM needs two N x H x W x 3 arrays of one shape, got {a.shape} and {b.shape}")
    return np.array([structural_similarity(x.astype(np.float64) / 255, y.astype(np.float64) / 255,
                                           channel_axis=-1, data_range=1.0) for x, y in zip(a, b)])
