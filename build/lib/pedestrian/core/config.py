"""Config checks that run before any work: a bad value fails in a second, naming its key, not an hour in."""

from __future__ import annotations

import importlib

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from pedestrian.base.errors import ConfigError
from pedestrian.core.module import OPTIMIZERS, SCHEDULERS
from pedestrian.data.augment import PIPELINES
from pedestrian.data.datamodule import NORMALIZE_MODES
from pedestrian.data.scenes import Difficulty
from pedestrian.models.init import ACTIVATIONS, SCHEMES
from pedestrian.models.resnet import DOWNSAMPLE

WANDB_MODES = ("auto", "offline", "online", "disabled")
SELECT_ON = ("train_val", "test_val")  # stage.select_on: the sets a best checkpoint may be chosen on


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, throw_on_missing=True)


def _check(cond: bool, key: str, value, why: str) -> None:
    if not cond:
        raise ConfigError(f"{key}={value!r}: {why}")


def _importable(key: str, target: str) -> None:
    mod, _, name = str(target).rpartition(".")
    try:
        getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"{key}={target!r}: no such class; pick one of the files in conf/"
                          f"{key.split('.')[0]}/ or give an importable path") from None


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first value that cannot work. Resolves every interpolation once."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        raise ConfigError(f"{e.full_key} must be set (it is '???'): {e.msg}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"{e.full_key}: {e.msg}") from None

    needs = OmegaConf.select(cfg, "stage.needs_init_from", default=None)
    if needs and not OmegaConf.select(cfg, "stage.init_from", default=None):
        raise ConfigError(f"stage.init_from=None: stage {cfg.stage.name} fine-tunes the weights of stage {needs}; "
                          f"run the ladder (python -m pedestrian.ladder), or pass stage.init_from=PATH/best.ckpt "
                          f"of a finished {needs} run")
    sel = OmegaConf.select(cfg, "stage.select_on", default="train_val")
    _check(sel in SELECT_ON, "stage.select_on", sel, f"must be one of {SELECT_ON} (the test set stays unseen)")
    _importable("model._target_", _get(cfg, "model._target_"))
    _importable("data._target_", _get(cfg, "data._target_"))
    for key, allowed in (("model.nonlinearity", tuple(ACTIVATIONS)), ("model.init", SCHEMES),
                         ("model.downsample", DOWNSAMPLE)):
        v = OmegaConf.select(cfg, key, default=None)
        _check(v is None or v in allowed, key, v, f"must be one of {allowed}")

    lr = _get(cfg, "optim.lr")
    _check(isinstance(lr, (int, float)) and lr > 0, "optim.lr", lr, "the learning rate must be a number > 0")
    name = _get(cfg, "optim.name")
    _check(name in OPTIMIZERS, "optim.name", name, f"must be one of {OPTIMIZERS}")
    wd = _get(cfg, "optim.weight_decay")
    _check(isinstance(wd, (int, float)) and wd >= 0, "optim.weight_decay", wd, "must be >= 0")
    betas = list(_get(cfg, "optim.betas"))
    _check(len(betas) == 2 and all(0 <= b < 1 for b in betas), "optim.betas", betas, "two numbers in [0, 1)")
    sched = _get(cfg, "optim.scheduler")
    _check(sched in SCHEDULERS, "optim.scheduler", sched, f"must be one of {SCHEDULERS}")

    for key in ("data.batch_size", "data.eval_batch_size", "data.image_size"):
        v = _get(cfg, key)
        if v is not None:
            _check(isinstance(v, int) and v > 0, key, v, "must be a positive integer")
    size = _get(cfg, "data.image_size")
    _check(size is None or size >= 16, "data.image_size", size, "LeNet and the renderer need at least 16 px")
    for key in ("data.n_train", "data.n_train_val", "data.n_test_val", "data.n_test", "data.n_target_pool"):
        v = OmegaConf.select(cfg, key, default=None)
        if v is not None:
            _check(isinstance(v, int) and v > 0, key, v, "every split needs at least one image")
    for key in ("data.p_night_source", "data.p_night_target", "data.p_pedestrian", "data.night_synth"):
        v = OmegaConf.select(cfg, key, default=None)
        if v is not None:
            _check(isinstance(v, (int, float)) and 0 <= v <= 1, key, v, "a probability in [0, 1]")
    knobs = OmegaConf.select(cfg, "data.difficulty", default=None)
    if knobs is not None:
        try:
            Difficulty.of(OmegaConf.to_container(knobs, resolve=True))
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None
    norm = OmegaConf.select(cfg, "data.normalize", default="once")
    _check(norm in NORMALIZE_MODES, "data.normalize", norm, f"must be one of {NORMALIZE_MODES}")
    aug = OmegaConf.select(cfg, "data.augment", default=None)
    _check(aug is None or aug in PIPELINES, "data.augment", aug, f"must be null or one of {PIPELINES}")

    clip = OmegaConf.select(cfg, "trainer.gradient_clip_val", default=None)
    _check(clip is None or (isinstance(clip, (int, float)) and clip >= 0), "trainer.gradient_clip_val", clip,
           "must be null or a number >= 0")
    prec = str(OmegaConf.select(cfg, "trainer.precision", default=""))
    _check(not clip or not prec.startswith("16"), "trainer.gradient_clip_val", clip, f"cannot clip with "
           f"trainer.precision={prec} (scaled fp16 gradients): use bf16-mixed or 32-true")
    algo = OmegaConf.select(cfg, "trainer.gradient_clip_algorithm", default=None)
    _check(algo in (None, "norm", "value"), "trainer.gradient_clip_algorithm", algo, "must be null, norm or value")
    acc = OmegaConf.select(cfg, "trainer.accumulate_grad_batches", default=1)
    _check(acc == 1, "trainer.accumulate_grad_batches", acc, "not supported: the optimizer step is ours "
           "(pedestrian/core/module.py, one step a batch); raise data.batch_size instead")
    epochs = _get(cfg, "trainer.max_epochs")
    _check(isinstance(epochs, int) and epochs >= 1, "trainer.max_epochs", epochs, "must be an integer >= 1")
    goal = _get(cfg, "goal_error")
    _check(isinstance(goal, (int, float)) and 0 <= goal < 1, "goal_error", goal, "an error rate in [0, 1)")
    mode = OmegaConf.select(cfg, "logger.wandb.mode", default=None)
    _check(mode is None or mode in WANDB_MODES, "logger.wandb.mode", mode, f"must be one of {WANDB_MODES}")
