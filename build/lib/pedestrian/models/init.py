"""Weight initialisation (lecture: He/Kaiming for ReLU, Glorot/Xavier for tanh)."""

from __future__ import annotations

from torch import nn

SCHEMES = ("kaiming", "xavier", "default")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


def init_weights(model: nn.Module, scheme: str = "kaiming", nonlinearity: str = "relu") -> nn.Module:
    """Initialise conv/linear layers in place; `default` keeps PyTorch's own init."""
    if scheme not in SCHEMES:
        raise ValueError(f"model.init={scheme!r} is not one of {SCHEMES}")
    if scheme == "default":
        return model
    # ReLU-like units get ReLU's gain; tanh gets tanh's (Glorot's reasoning).
    gain_name = "relu" if nonlinearity in ("relu", "gelu", "silu") else nonlinearity
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in model.modules():
        if m is layers[-1] and isinstance(m, nn.Linear):
            # The output layer feeds no ReLU: a ReLU gain there gives large logits, 60% of them saturated, and a
            # loss at init far above ln(classes) (the doctor's init_loss check). Small weights start it at chance.
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity=gain_name)
            else:
                nn.init.xavier_normal_(m.weight, gain=nn.init.calculate_gain(gain_name))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def activation(name: str) -> nn.Module:
    """The nonlinearity by name (a tuned hyperparameter in the lecture's list)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"model.nonlinearity={name!r} is not one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
