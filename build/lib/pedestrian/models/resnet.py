"""Residual networks (He et al. 2016): CIFAR-style for small images, ResNet-18 layout for the full profile."""

from __future__ import annotations

from torch import Tensor, nn

from pedestrian.models.init import activation, init_weights


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, kernel_size: int, nonlinearity: str) -> None:
        super().__init__()
        p = kernel_size // 2
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size, stride, p, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size, 1, p, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act = activation(nonlinearity)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:  # projection shortcut when the shape changes
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


DOWNSAMPLE = ("maxpool", "stride")


class ResNet(nn.Module):
    """`blocks` = BasicBlocks per stage, e.g. [1,1,1] (ResNet-8) on CPU, [2,2,2,2] (ResNet-18) on a GPU.
    `downsample`: how a stage halves the resolution. "maxpool" (our default) pools first, then runs the block at
    stride 1; "stride" is He et al.'s CIFAR ResNet (a stride-2 first conv, a strided 1x1 shortcut). A pedestrian
    is a few pixels wide here, and a strided conv or shortcut reads only some of them: on the CPU ladder the
    strided ResNet-8 trained worse than the plain ConvNet (which max-pools), and pooling fixed it
    (experiments/cpu/notes.md)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2, image_size: int = 32, width: int = 16,
                 blocks: tuple[int, ...] | list[int] = (1, 1, 1), kernel_size: int = 3,
                 nonlinearity: str = "relu", init: str = "kaiming", dropout: float = 0.0,
                 downsample: str = "maxpool") -> None:
        super().__init__()
        if downsample not in DOWNSAMPLE:
            raise ValueError(f"model.downsample={downsample!r} is not one of {DOWNSAMPLE}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  activation(nonlinearity))
        stages: list[nn.Module] = []
        c_in = width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                if stride == 2 and downsample == "maxpool":
                    stages.append(nn.MaxPool2d(2))
                    stride = 1
                stages.append(BasicBlock(c_in, c_out, stride, kernel_size, nonlinearity))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(c_in, num_classes))
        init_weights(self, init, nonlinearity)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(x)))
