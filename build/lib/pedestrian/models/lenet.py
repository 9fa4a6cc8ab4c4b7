"""LeNet-5 (LeCun et al. 1998): the lecture's "start simple" architecture for images."""

from __future__ import annotations

from torch import Tensor, nn

from pedestrian.models.init import activation, init_weights


class LeNet(nn.Module):
    """conv5-pool-conv5-pool-fc120-fc84-fc(classes); padding keeps it valid for any input size >= 12."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2, image_size: int = 32,
                 nonlinearity: str = "relu", init: str = "kaiming") -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), activation(nonlinearity), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), activation(nonlinearity), nn.MaxPool2d(2),
        )
        side = ((image_size // 2) - 4) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120), activation(nonlinearity),
            nn.Linear(120, 84), activation(nonlinearity),
            nn.Linear(84, num_classes),
        )
        init_weights(self, init, nonlinearity)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
