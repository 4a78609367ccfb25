"""Any timm model by name ("timm:resnet50.a1_in1k") with its own data config, and a curated set listed
in the registry (transformers and modern CNNs, downloaded on first use)."""

from __future__ import annotations

from pathlib import Path

import torch

from .downloads import checkpoint_dir, checkpoint_path, not_available, reachable
from .errors import ModelError
from .labels import imagenet_labels
from .preprocessing import Preprocessing

PREFIX = "timm:"
_HF_FILES = ("model.safetensors", "pytorch_model.bin")

# timm name -> (what it is, download size in MB: float32 weights); listed as "timm:<name>"
CURATED: dict[str, tuple[str, int]] = {
    "vit_base_patch16_224": ("ViT-B/16 vision transformer, Dosovitskiy et al. 2021", 346),
    "deit_small_patch16_224": ("DeiT-S data-efficient vision transformer, Touvron et al. 2021", 88),
    "swin_tiny_patch4_window7_224": ("Swin-T shifted-window transformer, Liu et al. 2021", 113),
    "convnext_tiny": ("ConvNeXt-T, a CNN modernised after transformers, Liu et al. 2022", 114),
    "efficientnetv2_rw_s": ("EfficientNetV2-S (timm's training), Tan & Le 2021", 96),
}


def local_weights_path(name: str) -> Path:
    """Where a user may place a timm model's weights by hand (torch.hub's checkpoint dir)."""
    return checkpoint_dir() / "timm" / f"{name}.safetensors"


def _pretrained_cfg(name: str):
    import timm

    if not timm.is_model(name):
        raise ModelError(f"Unknown timm model {name!r}; see timm.list_models(pretrained=True).")
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as exc:
        raise ModelError(f"timm model {name!r}: {exc}") from exc
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise ModelError(f"timm model {name!r} has no pretrained weights; give a tag, e.g. 'resnet50.a1_in1k'.")
    return cfg


def _cached_weights(name: str, cfg) -> Path | None:
    """A weights file already on disk: placed by hand, in torch.hub's cache or in the Hugging Face cache."""
    candidates = [local_weights_path(name)]
    if cfg.url:
        candidates.append(checkpoint_path(cfg.url))
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HF_FILES:
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                candidates.append(Path(found))
    return next((path for path in candidates if path.is_file()), None)


def is_ready(name: str) -> bool:
    """True when the weights of timm model `name` are on disk already (no download needed)."""
    return _cached_weights(name, _pretrained_cfg(name)) is not None


def describe(name: str) -> tuple[str, tuple[int, int]]:
    """A one-line description and the (H, W) input size of a curated timm model."""
    cfg = _pretrained_cfg(name)
    what, megabytes = CURATED[name]
    where = "cached" if _cached_weights(name, cfg) is not None else f"{megabytes} MB download on first use"
    return f"{what} (timm {name}.{cfg.tag}; {where})", tuple(cfg.input_size[1:])


def preprocessing_of(module: torch.nn.Module) -> Preprocessing:
    """The model's own timm data config (timm.data.resolve_data_config: input size, crop_pct,
    crop_mode, mean, std, interpolation) as a Preprocessing, equal to timm's create_transform."""
    from timm.data import resolve_data_config

    config = resolve_data_config(model=module)
    return Preprocessing.from_crop_pct(
        tuple(config["input_size"][1:]),
        config["crop_pct"],
        config["mean"],
        config["std"],
        config["interpolation"],
        config.get("crop_mode") or "center",
    )


def labels_of(module: torch.nn.Module) -> list[str]:
    """Class names: ImageNet-1k's, timm's ImageNet subset descriptions, or "class <i>"."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    classes = int(getattr(module, "num_classes", 0))  # timm classifiers declare their class count
    if classes == 1000:
        return imagenet_labels()
    subset = infer_imagenet_subset(module)
    if subset:
        return list(ImageNetInfo(subset).label_descriptions())
    return [f"class {i}" for i in range(classes)]


def load_timm(name: str) -> tuple[torch.nn.Module, Preprocessing, list[str]]:
    """The pretrained timm module (from a cached file, else downloaded), its preprocessing and labels."""
    import timm

    cfg = _pretrained_cfg(name)
    path = _cached_weights(name, cfg)
    if path is not None:
        module = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    else:
        url = f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/model.safetensors" if cfg.hf_hub_id else cfg.url
        target = local_weights_path(name) if cfg.hf_hub_id else checkpoint_path(cfg.url)
        if not reachable(url):
            raise not_available(f"timm {name}", target, url, "no network connection")
        try:
            module = timm.create_model(name, pretrained=True)
        except (OSError, RuntimeError) as exc:
            raise not_available(f"timm {name}", target, url, f"download failed: {exc}") from exc
    return module, preprocessing_of(module), labels_of(module)


def build_architecture(name: str, num_classes: int) -> torch.nn.Module:
    """A randomly initialised timm architecture with `num_classes` outputs."""
    import timm

    if not timm.is_model(name):
        raise ModelError(f"Unknown timm architecture {name!r}; see timm.list_models().")
    return timm.create_model(name, pretrained=False, num_classes=num_classes)
