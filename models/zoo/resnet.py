"""``resnet50`` and ``resnet50-tiny``: ResNet-50 v1.5 on digit images, written natively in both frameworks.

One parametrised architecture: image size, base width and bottleneck blocks per stage. The tiny
variant keeps every structural feature (7x7/2 stem, 3x3/2 max-pool, strided blocks, projection
shortcuts), so it exercises every porting pitfall in seconds.
"""

from __future__ import annotations

import keras
import numpy as np
import torch
from torch import nn

from serveoff.models import datasets
from serveoff.models.spec import Dataset, InputSpec, TrainingPlan
from serveoff.models.zoo.digits_mlp import dense_weights

EXPANSION = 4
# PyTorch's BatchNorm eps; Keras defaults to 1e-3, which would shift every normalised activation.
BN_EPSILON = 1e-5


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand; the stride sits on the 3x3 conv (v1.5), projection when shapes change."""

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.down_conv: nn.Conv2d | None = None
        self.down_bn: nn.BatchNorm2d | None = None
        if stride != 1 or in_channels != out_channels:  # projection shortcut
            self.down_conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.down_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.down_conv is not None and self.down_bn is not None:
            x = self.down_bn(self.down_conv(x))
        return torch.relu(out + x)


class ResNetTorch(nn.Module):
    """ResNet v1.5 on NHWC input: stem, bottleneck stages, global average pooling, fc."""

    def __init__(self, width: int, blocks: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, channels = [], width
        for i, count in enumerate(blocks):
            stage = []
            for b in range(count):
                stride = 2 if i > 0 and b == 0 else 1
                stage.append(Bottleneck(channels, width * 2**i, stride))
                channels = width * 2**i * EXPANSION
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The wire input is NHWC; contiguous NCHW is what a native PyTorch ResNet computes on.
        x = x.permute(0, 3, 1, 2).contiguous()
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.stages(x)
        return self.fc(x.mean(dim=(2, 3)))  # global average pooling, then fc


class ResNet:
    """ResNet-50 v1.5, parametrised by image size, base width and blocks per stage."""

    name: str
    description: str
    image_size: int
    width: int
    blocks: tuple[int, ...]
    num_classes = 10
    training: TrainingPlan

    def __init__(self) -> None:
        self.input = InputSpec("input", "float32", (self.image_size, self.image_size, 3))

    def config(self) -> dict:
        return {
            "image_size": self.image_size,
            "width": self.width,
            "blocks": list(self.blocks),
            "expansion": EXPANSION,
            "num_classes": self.num_classes,
        }

    def dataset(self, seed: int) -> Dataset:
        return datasets.digit_images(seed, self.image_size)

    def torch_module(self) -> nn.Module:
        return ResNetTorch(self.width, self.blocks, self.num_classes)

    def keras_model(self) -> keras.Model:
        """The same network in NHWC; layer names are the torch module paths with ``_`` for ``.``."""
        inputs = keras.Input(self.input.shape, name=self.input.name, dtype=self.input.dtype)
        x = keras_bn(keras_conv(inputs, self.width, 7, 2, 3, "conv1"), "bn1")  # the 7x7/2 stem
        x = keras_max_pool(keras.layers.ReLU(name="relu")(x))
        channels = self.width
        for i, count in enumerate(self.blocks):
            for b in range(count):
                stride = 2 if i > 0 and b == 0 else 1
                x = keras_bottleneck(x, channels, self.width * 2**i, stride, f"stages_{i}_{b}")
                channels = self.width * 2**i * EXPANSION
        x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)  # then fc, as in torch
        logits = keras.layers.Dense(self.num_classes, name="fc")(x)
        return keras.Model(inputs, logits, name=self.name.replace("-", "_"))

    def port_weights(self, module: nn.Module, model: keras.Model) -> None:
        ported = set()
        for path, layer in module.named_modules():
            if isinstance(layer, nn.Conv2d):
                weights = [conv_kernel(layer)]  # OIHW -> HWIO
            elif isinstance(layer, nn.BatchNorm2d):
                weights = bn_weights(layer)  # gamma, beta, running mean and variance
            elif isinstance(layer, nn.Linear):
                weights = dense_weights(layer)  # [out, in] -> [in, out]
            else:
                continue
            name = path.replace(".", "_")
            model.get_layer(name).set_weights(weights)  # checks every shape
            ported.add(name)
        missing = {layer.name for layer in model.layers if layer.weights} - ported
        if missing:
            raise ValueError(f"Keras layers with no torch counterpart: {sorted(missing)}")


class ResNet50(ResNet):
    """The ``resnet50`` architecture: standard widths at 224x224."""

    name = "resnet50"
    description = "ResNet-50 v1.5 on 224x224 RGB digit images (compute-bound CNN)"
    image_size = 224
    width = 64
    blocks = (3, 4, 6, 3)
    training = TrainingPlan(steps=20, batch_size=8, learning_rate=1e-3)


class ResNet50Tiny(ResNet):
    """The ``resnet50-tiny`` architecture: the same code, small enough for fast tests."""

    name = "resnet50-tiny"
    description = "ResNet-50 v1.5 structure at 32x32, base width 8, one block per stage (for tests)"
    image_size = 32
    width = 8
    blocks = (1, 1, 1, 1)
    training = TrainingPlan(steps=150, batch_size=32, learning_rate=3e-3)


def keras_conv(
    x: keras.KerasTensor, filters: int, kernel: int, stride: int, pad: int, name: str
) -> keras.KerasTensor:
    """A bias-free conv padded like PyTorch's ``padding=pad``."""
    if pad:
        # TF 'same' pads stride-2 convs asymmetrically (the extra row/column at the bottom/right);
        # PyTorch pads ``pad`` on every side, so pad explicitly and convolve 'valid'.
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False, name=name)(x)


def keras_bn(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """BatchNorm with PyTorch's eps; momentum 0.9 mirrors torch's 0.1 but only matters when training."""
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9, name=name)(x)


def keras_max_pool(x: keras.KerasTensor) -> keras.KerasTensor:
    """PyTorch's ``MaxPool2d(3, 2, padding=1)``, which pads with -inf.

    Zero padding is equivalent here only because the input is post-ReLU (every value >= 0), and
    explicit padding avoids TF 'same' padding's asymmetry.
    """
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool")(x)


def keras_bottleneck(
    x: keras.KerasTensor, in_channels: int, width: int, stride: int, name: str
) -> keras.KerasTensor:
    """The Keras twin of :class:`Bottleneck`, with the stride on the 3x3 conv (v1.5)."""
    out_channels = width * EXPANSION
    out = keras_bn(keras_conv(x, width, 1, 1, 0, f"{name}_conv1"), f"{name}_bn1")
    out = keras.layers.ReLU(name=f"{name}_relu1")(out)
    out = keras_bn(keras_conv(out, width, 3, stride, 1, f"{name}_conv2"), f"{name}_bn2")
    out = keras.layers.ReLU(name=f"{name}_relu2")(out)
    out = keras_bn(keras_conv(out, out_channels, 1, 1, 0, f"{name}_conv3"), f"{name}_bn3")
    if stride != 1 or in_channels != out_channels:
        x = keras_bn(keras_conv(x, out_channels, 1, stride, 0, f"{name}_down_conv"), f"{name}_down_bn")
    out = keras.layers.Add(name=f"{name}_add")([out, x])
    return keras.layers.ReLU(name=f"{name}_out")(out)


def conv_kernel(layer: nn.Conv2d) -> np.ndarray:
    """A torch conv weight as a Keras kernel: OIHW -> HWIO."""
    return layer.weight.detach().numpy().transpose(2, 3, 1, 0)


def bn_weights(layer: nn.BatchNorm2d) -> list:
    """A torch BatchNorm as Keras weights: gamma, beta, moving mean and moving variance."""
    return [t.detach().numpy() for t in (layer.weight, layer.bias, layer.running_mean, layer.running_var)]
