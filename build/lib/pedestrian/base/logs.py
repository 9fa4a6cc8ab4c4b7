"""One log line per event, and none that is an advert or a known deprecation from our dependencies.

Lightning gives its `lightning` logger a console handler of its own; under a Hydra run, whose handlers sit on
the root logger, every Lightning message was then printed twice (once by each). It also logs promotional tips
at every Trainer start. filter_noise() is called wherever a Trainer is built (core/trainer.py) or a run starts
(core/train.py): every entry point goes through one of them.
"""

from __future__ import annotations

import logging
import warnings

ADVERTS = ("💡 Tip:",)  # Lightning's tips (litlogger, LitModels, LitServe ...), logged at every Trainer start
KNOWN_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # torch's pytree API, used inside Lightning
    r".*overridden `transfer_batch_to_device` in `LightningModule`.*",  # ours on purpose (core/module.py)
)


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(ADVERTS)


def filter_noise() -> None:
    """Idempotent. Call it after Lightning is imported and, under Hydra, after Hydra set up logging."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)  # filters act on the logger a record is made on
        if not any(isinstance(f, _NoAdverts) for f in logger.filters):
            logger.addFilter(_NoAdverts())
    for message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    if logging.getLogger().handlers:  # the root logger prints (Hydra): Lightning's own handler would repeat it
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
                logger.removeHandler(handler)
            logger.propagate = True
