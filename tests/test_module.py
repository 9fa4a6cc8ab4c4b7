"""The LightningModule: its running train error and loss (each step's logits kept, counted once an epoch) equal a
direct count over the same images; the step loss reaches the progress bar; its optimizer step (written out in
training_step) equals a plain PyTorch step, steps the schedulers and clips as the trainer config says."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import compose

from pedestrian.core.train import build
from pedestrian.core.trainer import StepLossBar


def test_running_train_error_and_loss_equal_a_direct_count(tmp_path, data_root):
    cfg = compose("+stage=lenet", "profile=tiny", "logger=none", f"data.root={data_root}", f"run_dir={tmp_path}")
    dm, module = build(cfg)
    module.optim_cfg["lr"] = 0.0  # the weights stay put, so the epoch's running figures have an exact answer
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    wrong = seen = 0
    loss_sum = 0.0
    with torch.no_grad():
        for x, y, _ in dm.train_dataloader():
            logits = module(dm.normalize(x))
            wrong += int((logits.argmax(1) != y).sum())
            seen += len(y)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
    assert seen > 0 and 0 < wrong < seen
    assert float(trainer.callback_metrics["train/running_error"]) == pytest.approx(wrong / seen, abs=1e-6)
    assert float(trainer.callback_metrics["train/loss_epoch"]) == pytest.approx(loss_sum / seen, rel=1e-4)


def test_the_progress_bar_shows_the_step_loss(tmp_path, data_root):
    cfg = compose("+stage=lenet", "profile=tiny", "logger=none", f"data.root={data_root}", f"run_dir={tmp_path}")
    dm, module = build(cfg)
    bar = StepLossBar()
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, callbacks=[bar], log_every_n_steps=1,
                        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    assert module.step_loss is not None and 0 < module.step_loss < 2
    assert bar.get_metrics(trainer, module)["train/loss_step"] == f"{module.step_loss:.3f}"


class _Record(L.Callback):
    """The learning rate each optimizer step used, and the gradient norm the optimizer saw."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.grad_norms: list[float] = []
        self.grad_max: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])
        grads = [p.grad.flatten() for p in pl_module.parameters() if p.grad is not None]
        self.grad_norms.append(float(torch.cat(grads).norm()))
        self.grad_max.append(float(torch.cat(grads).abs().max()))


def _fit(cfg, tmp_path, epochs: int = 1):
    dm, module = build(cfg)
    rec = _Record()
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=str(tmp_path), callbacks=[rec])
    trainer.fit(module, datamodule=dm)
    return dm, module, trainer, rec


def test_the_training_step_is_a_plain_pytorch_step(tmp_path, data_root):
    """Our optimizer step (zero_grad, backward, step, written out in training_step) gives the weights a plain
    loop gives from the same seed, batches and optimizer."""
    from pedestrian.core.module import build_optimizer

    cfg = compose("+stage=lenet", "profile=tiny", "logger=none", f"data.root={data_root}", f"run_dir={tmp_path}")
    L.seed_everything(0)
    _, module, _, rec = _fit(cfg, tmp_path)
    L.seed_everything(0)
    dm, ref = build(cfg)
    opt = build_optimizer(ref.model.parameters(), cfg.optim)
    steps = 0
    for x, y, _ in dm.train_dataloader():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(ref.model(dm.normalize(x)), y).backward()
        opt.step()
        steps += 1
    assert steps == len(rec.lrs) > 1
    for (name, a), b in zip(module.model.state_dict().items(), ref.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_schedulers_step_per_epoch_and_per_batch(tmp_path, data_root):
    base = ["+stage=lenet", "profile=tiny", "logger=none", f"data.root={data_root}", f"run_dir={tmp_path}"]
    _, _, trainer, rec = _fit(compose(*base, "optim.scheduler=cosine"), tmp_path, epochs=2)
    per_epoch = len(rec.lrs) // 2
    lr = float(trainer.lightning_module.optim_cfg["lr"])
    assert rec.lrs[:per_epoch] == [lr] * per_epoch
    assert rec.lrs[per_epoch:] == pytest.approx([lr / 2] * per_epoch)  # cosine over 2 epochs: halfway after one
    _, _, _, rec = _fit(compose(*base, "optim.scheduler=onecycle"), tmp_path / "onecycle", epochs=2)
    ref = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(ref, max_lr=lr, total_steps=len(rec.lrs))
    want = []
    for _ in rec.lrs:
        want.append(ref.param_groups[0]["lr"])
        ref.step()
        sched.step()
    assert rec.lrs == pytest.approx(want)
    assert len(set(rec.lrs)) == len(rec.lrs)  # a new rate every step


def test_gradient_clipping_applies_trainer_gradient_clip_val(tmp_path, data_root):
    base = ["+stage=lenet", "profile=tiny", "logger=none", f"data.root={data_root}", f"run_dir={tmp_path}"]
    _, _, _, free = _fit(compose(*base), tmp_path)
    clip = min(free.grad_norms) / 10
    _, _, _, clipped = _fit(compose(*base, f"trainer.gradient_clip_val={clip}"), tmp_path / "clipped")
    assert max(clipped.grad_norms) == pytest.approx(clip, rel=1e-4)
    _, _, _, by_value = _fit(compose(*base, "trainer.gradient_clip_val=1e-4", "trainer.gradient_clip_algorithm=value"),
                             tmp_path / "value")
    assert max(by_value.grad_max) == pytest.approx(1e-4, rel=1e-4) and max(free.grad_max) > 1e-3


def test_a_checkpoint_of_the_automatic_loop_resumes_at_its_step(tmp_path, data_root):
    """Checkpoints written before the optimizer step moved into training_step count their steps in Lightning's
    automatic loop: resumed now, global_step (the logging axis) goes on from there instead of from 0."""
    cfg = compose("+stage=lenet", "profile=tiny", "logger=none", f"data.root={data_root}", f"run_dir={tmp_path}")

    def fit(epochs: int, ckpt_path=None) -> L.Trainer:
        dm, module = build(cfg)
        trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=str(tmp_path))
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        return trainer

    trainer = fit(1)
    steps = trainer.global_step
    assert steps > 0
    trainer.save_checkpoint(tmp_path / "new.ckpt")
    ckpt = torch.load(tmp_path / "new.ckpt", weights_only=True)
    loops = ckpt["loops"]["fit_loop"]
    manual = loops["epoch_loop.manual_optimization.optim_step_progress"]
    assert manual["total"]["completed"] == steps
    # as the automatic loop wrote it: its count under optim_progress.optimizer.step, the manual one at zero
    loops["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"] = manual
    loops["epoch_loop.manual_optimization.optim_step_progress"] = {
        k: {kk: 0 for kk in v} for k, v in manual.items()}
    torch.save(ckpt, tmp_path / "old.ckpt")
    assert fit(2, tmp_path / "old.ckpt").global_step == 2 * steps
