"""models.layers: spatial- and token-layer discovery and the default CAM layer, on randomly initialised networks."""

import pytest
import torch

import models

EXPECTED_DEFAULTS = {
    "resnet18": "layer4",
    "resnet50": "layer4",
    "vgg16": "features.29",
    "alexnet": "features.11",
    "densenet121": "features",
    "mobilenet_v3_large": "features",
    "efficientnet_b0": "features",
    "convnext_tiny": "features",
    "googlenet": "inception5b",
}


def torchvision_net(name: str) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None).eval()


def no_hooks_left(module: torch.nn.Module) -> bool:
    return all(not sub._forward_hooks for sub in module.modules())


@pytest.mark.parametrize("name", sorted(EXPECTED_DEFAULTS))
def test_default_layer_of_torchvision_architectures(name):
    net = torchvision_net(name)
    layers = models.discover_layers(net)
    assert models.default_layer(layers) == EXPECTED_DEFAULTS[name]
    names = [layer.name for layer in layers]
    assert "" not in names and len(names) == len(set(names))
    assert all(len(layer.shape) == 3 and layer.shape[1] > 1 and layer.shape[2] > 1 for layer in layers)
    assert no_hooks_left(net)


def test_default_layer_of_timm_efficientnet_lite0():
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    layers = models.discover_layers(net, (224, 224))
    assert models.default_layer(layers) == "bn2"
    assert [layer.name for layer in layers][-3:] == ["conv_head", "bn2.act", "bn2"]  # children first
    assert not any(layer.kind in ("Identity", "Dropout", "DropPath") for layer in layers)  # no-ops left out


def test_resnet_layers_shapes_order_and_ambiguous_modules():
    resnet18 = {layer.name: layer for layer in models.discover_layers(torchvision_net("resnet18"))}
    assert resnet18["layer4"].shape == (512, 7, 7) and resnet18["layer4"].kind == "Sequential"
    assert resnet18["conv1"].shape == (64, 112, 112)
    assert list(resnet18).index("layer4.1") < list(resnet18).index("layer4")
    assert list(resnet18).index("layer1") < list(resnet18).index("layer2")
    assert "avgpool" not in resnet18  # 1x1 output is not spatial
    resnet50 = [layer.name for layer in models.discover_layers(torchvision_net("resnet50"))]
    assert "layer1.0.conv3" in resnet50 and "layer1.0.relu" not in resnet50  # relu runs 3x per block


def test_pooling_outputs_are_not_default_candidates():
    alexnet = {layer.name: layer for layer in models.discover_layers(torchvision_net("alexnet"))}
    assert alexnet["features.12"].pooled and alexnet["features.12"].kind == "MaxPool2d"
    assert alexnet["features"].pooled and alexnet["avgpool"].pooled  # the container returns the pool output
    assert not alexnet["features.11"].pooled and not alexnet["features.10"].pooled


def test_discovery_restores_mode_and_removes_hooks_on_failure():
    net = torchvision_net("resnet18").train()
    models.discover_layers(net, (64, 64))
    assert net.training and no_hooks_left(net)

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            self.conv(x)
            raise RuntimeError("boom")

    broken = Broken()
    with pytest.raises(models.ModelError, match="boom"):
        models.discover_layers(broken, (32, 32))
    assert broken.training and no_hooks_left(broken)


def test_a_model_without_spatial_layers_has_no_default():
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 5))
    assert models.discover_layers(mlp, (16, 16)) == []
    with pytest.raises(models.ModelError, match="no spatial feature map or token layer"):
        models.default_layer([])
    classifier = models.Classifier("mlp", mlp, list("abcde"), models.Preprocessing(16, (16, 16)), "cpu")
    assert classifier.layers == [] and classifier.default_layer is None and classifier.default_layer_reason is None


def test_vit_token_layers_are_listed_as_grids_with_the_block_norm_as_default():
    from token_nets import tiny_vit

    layers = {layer.name: layer for layer in models.discover_layers(tiny_vit(reg_tokens=4), (96, 96))}
    norm1 = layers["blocks.1.norm1"]
    assert norm1.shape == (48, 6, 6) and norm1.layout == "tokens" and norm1.prefix_tokens == 5
    assert norm1.kind == "LayerNorm" and norm1.is_token_layer
    assert layers["blocks.0.mlp.fc1"].shape == (192, 6, 6)
    assert layers["patch_embed.proj"].layout == "grid" and not layers["patch_embed.proj"].is_token_layer
    assert layers["patch_embed"].prefix_tokens == 0 and layers["norm"].prefix_tokens == 5
    name, reason = models.default_layer_choice(list(layers.values()))
    assert name == "blocks.1.norm1" and "class token" in reason and "pytorch-grad-cam" in reason
    assert models.default_layer_reason(list(layers.values())) == reason


def test_swin_channels_last_and_token_layers_and_its_default():
    from token_nets import tiny_swin

    net = tiny_swin()
    layers = {layer.name: layer for layer in models.discover_layers(net, (64, 64))}
    block, norm2 = layers["layers.1.blocks.1"], layers["layers.1.blocks.1.norm2"]
    assert block.layout == "channels_last" and block.shape == (48, 8, 8)
    assert norm2.layout == "tokens" and norm2.shape == (48, 8, 8) and norm2.prefix_tokens == 0
    assert layers["patch_embed"].shape == (24, 16, 16)
    assert "layers.0.blocks.0.attn" not in layers  # attention windows, not the batch
    name, reason = models.default_layer_choice(list(layers.values()))
    assert name == "layers.1.blocks.1.norm2" and "8 x 8" in reason
    assert no_hooks_left(net)


def test_channels_last_layers_inside_a_cnn_are_read_channels_first_and_the_default_is_unchanged():
    layers = {layer.name: layer for layer in models.discover_layers(torchvision_net("convnext_tiny"))}
    assert layers["features.1.0.block.2"].layout == "channels_last"  # LayerNorm after a Permute
    assert layers["features.1.0.block.2"].shape == (96, 56, 56)
    assert layers["features.1.0.block.0"].layout == "grid" and layers["features.1.0.block.0"].shape == (96, 56, 56)
    name, reason = models.default_layer_choice(list(layers.values()))
    assert name == "features" and "before pooling" in reason
