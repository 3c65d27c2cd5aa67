"""Builds the official SAM 2 video predictor: from a user's checkpoint, or from seeded random weights.

Random weights straight from the official initialisation hide bugs (cloned layers are identical, biases are
zero, LayerNorm scales are one, the fuser's layer scale is 1e-6, Hiera's position embedding is zero), so the
random mode adds seeded Gaussian noise to every parameter, and lets the caller shift the object-score head so
that "object present" and "object absent" both occur on a fixture clip.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import torch

from .errors import UserError

SIZES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l", "test": "t"}
FAMILIES = {
    "sam2.1": "configs/sam2.1/sam2.1_hiera_{}.yaml",
    "sam2": "configs/sam2/sam2_hiera_{}.yaml",
}

# A shrunk architecture that keeps every code path of the real model (four Hiera stages, high-res features,
# pointers split into C/mem_dim tokens, RoPE in memory attention, object scores) at 1.4M parameters.
TEST_IMAGE_SIZE = 256
TEST_OVERRIDES = [
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.d_model=64",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=64",
    "++model.memory_attention.d_model=64",
    "++model.memory_attention.num_layers=2",
    "++model.memory_attention.layer.d_model=64",
    "++model.memory_attention.layer.dim_feedforward=128",
    "++model.memory_attention.layer.self_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "++model.memory_encoder.out_dim=16",
    "++model.memory_encoder.in_dim=64",
    "++model.memory_encoder.position_encoding.num_pos_feats=16",
    "++model.memory_encoder.mask_downsampler.embed_dim=64",
    "++model.memory_encoder.fuser.layer.dim=64",
]


def image_size_overrides(image_size: int) -> list[str]:
    """The input size and the memory attention's RoPE table size must change together."""
    if image_size % 32 != 0 or image_size < 128:
        raise UserError(f"The image size {image_size} is not usable: it must be a multiple of 32, at least 128.")
    f = image_size // 16
    return [
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{f},{f}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{f},{f}]",
    ]


@dataclass
class BuiltModel:
    predictor: torch.nn.Module
    family: str
    size: str
    config: str
    overrides: list[str]
    source: dict = field(default_factory=dict)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(model: torch.nn.Module) -> str:
    """A hash of the weights themselves, so a model rebuilt elsewhere can be proven identical."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _compose(family: str, size: str, overrides: list[str]) -> tuple[str, torch.nn.Module]:
    from sam2.build_sam import build_sam2_video_predictor

    if family not in FAMILIES:
        raise UserError(f"The model family '{family}' is unknown; use one of: {', '.join(FAMILIES)}.")
    if size not in SIZES:
        raise UserError(f"The model size '{size}' is unknown; use one of: {', '.join(SIZES)}.")
    config = FAMILIES[family].format(SIZES[size])
    predictor = build_sam2_video_predictor(config, ckpt_path=None, device="cpu", hydra_overrides_extra=overrides)
    predictor.eval()
    return config, predictor


def build(
    *,
    family: str = "sam2.1",
    size: str,
    checkpoint: str | None = None,
    seed: int | None = None,
    noise_std: float = 0.02,
    object_score_bias: float = 0.0,
    image_size: int | None = None,
) -> BuiltModel:
    """Build the predictor (eval mode, CPU) either from `checkpoint` or from `seed`."""
    if (checkpoint is None) == (seed is None):
        raise UserError("Give either a checkpoint or --random-weights with --seed, not both and not neither.")
    overrides = list(TEST_OVERRIDES) if size == "test" else []
    if image_size is None and size == "test":
        image_size = TEST_IMAGE_SIZE
    if image_size is not None:
        overrides += image_size_overrides(image_size)

    if checkpoint is not None:
        if not os.path.isfile(checkpoint):
            raise UserError(f"The checkpoint {checkpoint} does not exist.")
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds here; the file is what matters to the user
            raise UserError(
                f"The checkpoint {checkpoint} could not be read: it is truncated, corrupted or not a PyTorch checkpoint "
                f"({type(e).__name__}: {e})."
            ) from None
        if isinstance(state, dict) and "model" in state:
            state = state["model"]
        if not isinstance(state, dict):
            raise UserError(f"The checkpoint {checkpoint} holds no state dict under the key 'model'.")
        config, predictor = _compose(family, size, overrides)
        missing, unexpected = predictor.load_state_dict(state, strict=False)
        if missing or unexpected:
            first = (list(missing) + list(unexpected))[:3]
            raise UserError(
                f"The checkpoint {checkpoint} does not fit the {family} {size} architecture: "
                f"{len(missing)} weights missing and {len(unexpected)} unexpected (first: {', '.join(first)}); "
                f"choose the --family/--size the checkpoint was trained as."
            )
        source = {"kind": "checkpoint", "file": os.path.basename(checkpoint), "sha256": sha256_file(checkpoint)}
    else:
        torch.manual_seed(seed)
        config, predictor = _compose(family, size, overrides)
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for _, p in sorted(predictor.named_parameters()):
                p.add_(torch.randn(p.shape, generator=generator) * noise_std)
            predictor.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.add_(object_score_bias)
        source = {"kind": "random", "seed": seed, "noise_std": noise_std, "object_score_bias": object_score_bias}

    return BuiltModel(predictor, family, size, config, overrides, source)


def rebuild_from_manifest(manifest: dict, checkpoint: str | None = None) -> BuiltModel:
    """Rebuild the very predictor a model directory was exported from (checked by `weights_sha256`)."""
    src = manifest["source"]
    kwargs = dict(family=manifest["family"], size=manifest["size"], image_size=manifest["image_size"])
    if src["kind"] == "random":
        built = build(seed=src["seed"], noise_std=src["noise_std"], object_score_bias=src["object_score_bias"], **kwargs)
    else:
        if checkpoint is None:
            raise UserError(
                f"This model was exported from the checkpoint {src['file']}; pass it with --checkpoint to rebuild the reference."
            )
        built = build(checkpoint=checkpoint, **kwargs)
    got = weights_sha256(built.predictor)
    if got != manifest["weights_sha256"]:
        raise UserError(
            "The rebuilt weights differ from the ones the model directory was exported from "
            f"(weights SHA-256 {got[:12]}… vs {manifest['weights_sha256'][:12]}…); check the torch/sam2 versions "
            "(bundle/exporter/requirements.txt) or the checkpoint."
        )
    return built
