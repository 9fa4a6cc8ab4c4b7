"""Every stage composes; each stage holds only its delta; bad config fails fast, naming the key."""

from __future__ import annotations

import pytest
from conftest import CONF, cli, compose
from omegaconf import OmegaConf

from pedestrian.base.errors import ConfigError
from pedestrian.core.config import validate

STAGES = ["lenet", "deeper", "resnet", "resnet_lr", "more_data", "weight_decay", "augment", "tuned",
          "night_synth", "night_finetune"]


def test_stage_files_are_the_ladder():
    assert sorted(p.stem for p in (CONF / "stage").glob("*.yaml")) == sorted(STAGES)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("profile", ["cpu", "full", "tiny"])
def test_every_stage_composes_and_validates(stage, profile):
    extra = ["stage.init_from=some.ckpt"] if stage == "night_finetune" else []
    cfg = compose(f"+stage={stage}", f"profile={profile}", "run_dir=/tmp/x", *extra)
    assert cfg.stage.name == stage
    validate(cfg)


def test_stages_chain_their_deltas():
    get = lambda s, k, *o: OmegaConf.select(compose(f"+stage={s}", "run_dir=/tmp/x", *o), k)  # noqa: E731
    assert get("lenet", "model._target_").endswith("LeNet")
    assert get("deeper", "model._target_").endswith("ConvNet")
    assert get("resnet", "model._target_").endswith("ResNet")
    assert get("resnet", "optim.lr") == 3e-4 and get("resnet_lr", "optim.lr") != 3e-4
    assert get("more_data", "data.n_train") > get("resnet_lr", "data.n_train")
    assert get("more_data", "optim.weight_decay") == 0 and get("weight_decay", "optim.weight_decay") > 0
    assert get("weight_decay", "data.augment") is None and get("augment", "data.augment") == "basic"
    assert get("tuned", "data.night_synth") == 0 and get("night_synth", "data.night_synth") > 0
    assert list(get("night_finetune", "data.train_splits", "stage.init_from=x")) == ["target_pool"]
    # The ladder's later stages keep the earlier stages' changes (the defaults chain).
    assert get("night_synth", "data.augment") == "basic" and get("night_synth", "optim.weight_decay") > 0


def test_profiles_change_scale_not_meaning():
    cpu, full = (compose("+stage=more_data", f"profile={p}", "run_dir=/tmp/x") for p in ("cpu", "full"))
    assert cpu.data.image_size < full.data.image_size and cpu.data.n_train < full.data.n_train
    assert full.data.n_train == 250_000 and compose("+stage=lenet", "profile=full").data.n_train == 10_000
    assert cpu.model._target_ == full.model._target_ and cpu.optim == full.optim


@pytest.mark.parametrize("override,key", [
    ("optim.lr=-1", "optim.lr"),
    ("optim.lr=0", "optim.lr"),
    ("data.batch_size=0", "data.batch_size"),
    ("model._target_=pedestrian.models.NoSuchNet", "model._target_"),
    ("optim.name=adagrad", "optim.name"),
    ("data.p_night_target=1.5", "data.p_night_target"),
    ("trainer.max_epochs=0", "trainer.max_epochs"),
    ("data.normalize=thrice", "data.normalize"),
    ("goal_error=2", "goal_error"),
    ("stage.select_on=test", "stage.select_on"),  # choosing on the test set would leak it
    ("model.nonlinearity=sigmoidish", "model.nonlinearity"),
    ("model.init=orthogonal", "model.init"),
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val"),
    ("trainer.gradient_clip_val=1 trainer.precision=16-mixed", "trainer.gradient_clip_val"),
    ("trainer.gradient_clip_algorithm=l3", "trainer.gradient_clip_algorithm"),
    ("+trainer.accumulate_grad_batches=4", "trainer.accumulate_grad_batches"),  # our step is one a batch
    ("data.difficulty.p_hard=2", "data.difficulty.p_hard"),
    ("+data.difficulty.ped_height=3", "data.difficulty: unknown knob"),  # a typo is named, not ignored
])
def test_bad_values_name_their_key(override, key):
    cfg = compose("+stage=lenet", "run_dir=/tmp/x", *override.split())
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)


def test_bad_resnet_downsample_is_named():
    with pytest.raises(ConfigError, match=r"model\.downsample.*'maxpool', 'stride'"):
        validate(compose("+stage=resnet", "run_dir=/tmp/x", "model.downsample=avg"))


def test_missing_mandatory_value_is_named():
    with pytest.raises(ConfigError, match="init_from"):
        validate(compose("+stage=night_finetune", "run_dir=/tmp/x"))


def test_cli_unknown_stage_lists_the_valid_ones(tmp_path):
    r = cli("+stage=bogus", f"hydra.run.dir={tmp_path}", timeout=120)
    assert r.returncode != 0
    err = r.stdout + r.stderr
    assert "stage/bogus" in err
    for s in STAGES:
        assert s in err


def test_cli_bad_value_fails_before_training(tmp_path):
    r = cli("+stage=lenet", "optim.lr=-0.1", f"hydra.run.dir={tmp_path}", "logger=none", timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "config error: optim.lr=-0.1" in r.stderr
    assert not (tmp_path / "checkpoints").exists()
