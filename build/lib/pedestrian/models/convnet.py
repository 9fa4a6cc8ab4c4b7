"""A deeper, wider plain convnet: the lecture's first answer to underfitting ("make the model bigger")."""

from __future__ import annotations

from torch import Tensor, nn

from pedestrian.models.init import activation, init_weights


class ConvNet(nn.Module):
    """`depth` stages of `convs_per_stage` 3x3 convs, width doubling per stage, max-pool between stages."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2, image_size: int = 32, width: int = 32,
                 depth: int = 3, convs_per_stage: int = 2, kernel_size: int = 3, batch_norm: bool = False,
                 nonlinearity: str = "relu", init: str = "kaiming", dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, c = in_channels, width
        for stage in range(depth):
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(c_in, c, kernel_size, padding=kernel_size // 2, bias=not batch_norm)]
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c))
                layers.append(activation(nonlinearity))
                c_in = c
            if stage < depth - 1:
                layers.append(nn.MaxPool2d(2))
                c *= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(c_in, num_classes))
        init_weights(self, init, nonlinearity)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
