"""Models of the ladder: LeNet -> a deeper convnet -> a residual network, and their init schemes."""

from pedestrian.models.convnet import ConvNet
from pedestrian.models.init import init_weights
from pedestrian.models.lenet import LeNet
from pedestrian.models.resnet import ResNet

__all__ = ["ConvNet", "LeNet", "ResNet", "init_weights"]
