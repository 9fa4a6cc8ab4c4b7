"""Train/eval mode (lecture: "forgetting to set up train mode for the net correctly ... often comes up with batch
norm"). Runs the real evaluation path (a stage: pedestrian.core.train.predict; your model: val_loader in eval mode) and
checks that

  * every layer is in eval mode while it predicts (batch norm on running statistics, dropout off);
  * its outputs are deterministic: the same weights and images give the same probabilities twice, from the model
    alone (else something random stays on in eval mode) and through the evaluation data (else the evaluation
    data is augmented);
  * they are consistent: an image's output does not depend on which other images share its batch.
"""

from __future__ import annotations

import time

import numpy as np

from pedestrian.doctor.common import CheckResult, eval_probs

FIXES = {
    "evaluated_in_train_mode": ["call model.eval() before evaluating or predicting (and model.train() before "
                                "training again); Lightning does it for its own loops, hand-written loops must",
                                "with batch norm, train-mode evaluation uses each batch's statistics and "
                                "overwrites the running averages"],
    "nondeterministic": ["dropout or another random layer is active at evaluation: call model.eval(), and pass "
                         "training=self.training to functional dropout (F.dropout defaults to training=True)",
                         "on a GPU, set deterministic algorithms when comparing runs"],
    "augmented_at_eval": ["evaluation data must be fixed: give the validation/test set its own transform (resize, "
                          "normalise), without the random flips, crops and colour jitter of training",
                          "a classic: one dataset with the training transform, then split into train and val"],
    "inconsistent": ["an output depends on the rest of the batch: batch norm in train mode, or a layer that mixes "
                     "samples (see the gradient-dependency check)"],
}


def check(subject) -> CheckResult:
    t0 = time.time()
    module = subject.fresh()
    module.train()  # as after a training epoch: the evaluation path has to switch it
    p1, training_layers = subject.predict(module)
    p2, _ = subject.predict(module)
    s = subject.settings.modes
    tol = float(s.tolerance if subject.device.type == "cpu" else s.tolerance_gpu)
    repeat_gap = float(np.abs(p1 - p2).max())

    # The same inputs, in eval mode set directly: twice (the model alone deterministic?), and in another order
    # and other batch sizes (independent of the batch?), against what the evaluation path returned.
    n = min(len(p1), int(subject.settings.modes.n_images))
    x = subject.eval_inputs(n)
    ref = subject.fresh()
    d1 = eval_probs(ref, x, chunk=len(x))
    model_gap = float(np.abs(eval_probs(ref, x, chunk=len(x)) - d1).max())
    rev = subject.score(eval_probs(ref, x.flip(0), chunk=7)[::-1])
    consistent_gap = float(np.abs(rev - p1[:n]).max())
    details = {"path": subject.modes_note(), "n": len(p1), "layers_in_train_mode": training_layers,
               "deterministic_max_diff": repeat_gap, "model_repeat_max_diff": model_gap,
               "batch_composition_max_diff": consistent_gap, "tolerance": tol}
    summary = (f"{subject.modes_note()} ({len(p1)} inputs): {len(training_layers)} layers in train mode, "
               f"repeat differs by {repeat_gap:.2g}, another batch composition by {consistent_gap:.2g}")
    diagnosis = None
    if training_layers:
        diagnosis = "evaluated_in_train_mode"
        effect = ("its outputs changed with it" if max(repeat_gap, consistent_gap) > tol
                  else "harmless for this model only because it has no batch norm or dropout")
        text = (f"predict() ran the model in TRAIN mode ({len(training_layers)} layers, e.g. "
                f"{', '.join(training_layers[:3])}): .eval() never took effect; {effect}")
    elif model_gap > tol:
        diagnosis, text = "nondeterministic", (f"in eval mode the model itself gives outputs up to {model_gap:.3g} "
                                               "apart for the same inputs: something random stays on")
    elif repeat_gap > tol:
        diagnosis, text = "augmented_at_eval", (
            f"evaluating the same images twice gave outputs up to {repeat_gap:.3g} apart, though the model alone is "
            "deterministic: the evaluation data changes from pass to pass, random augmentation at evaluation")
    elif consistent_gap > tol:
        diagnosis, text = "inconsistent", (f"an input's output changes by up to {consistent_gap:.3g} with the "
                                           "other inputs in its batch")
    if diagnosis:
        return CheckResult("modes", "fail", summary, diagnosis, text, FIXES[diagnosis], details,
                           seconds=time.time() - t0)
    return CheckResult("modes", "pass", summary, None, "eval mode, deterministic and independent of the batch",
                       details=details, seconds=time.time() - t0)
