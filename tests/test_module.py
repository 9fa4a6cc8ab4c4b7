"""The LightningModule's running train error and loss: summed in place during the epoch (pedestrian/module.py),
they must equal a direct count over the same images."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import compose

from pedestrian.train import build


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
