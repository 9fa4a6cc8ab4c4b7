"""Bias-variance with two validation sets (lecture, "Evaluate").

test error = goal (irreducible) error + avoidable bias + variance + distribution shift + validation overfitting

  avoidable bias       = train error     - goal error
  variance             = train-val error - train error     (train-val: held out, training distribution)
  distribution shift   = test-val error  - train-val error (test-val: held out, test distribution)
  validation overfit   = test error      - test-val error

The largest term picks what to do next, from the lecture's ordered lists.
"""

from __future__ import annotations

from rich.table import Table

ERROR_KEYS = ("train", "train_val", "test_val", "test")
TERMS = ("avoidable_bias", "variance", "distribution_shift", "val_overfitting")

# The lecture's prioritised lists, in its order ("Improve model and data").
NEXT_STEPS: dict[str, list[str]] = {
    "avoidable_bias": [
        "Make the model bigger (more layers, more units per layer)",
        "Reduce regularization",
        "Error analysis",
        "Choose a different (closer to state-of-the-art) model architecture",
        "Tune hyperparameters (learning rate first)",
        "Add features",
    ],
    "variance": [
        "Add more training data (if possible)",
        "Add normalization (batch norm, layer norm)",
        "Add data augmentation",
        "Increase regularization (dropout, L2, weight decay)",
        "Error analysis",
        "Choose a different (closer to state-of-the-art) model architecture",
        "Tune hyperparameters",
        "Early stopping",
        "Remove features",
        "Reduce model size",
    ],
    "distribution_shift": [
        "Analyse test-val errors by slice and collect more training data like them",
        "Analyse test-val errors and synthesise more training data like them",
        "Apply domain adaptation (e.g. fine-tune on a small labelled target set)",
    ],
    "val_overfitting": ["Re-collect or re-sample the validation set"],
}


def decompose(goal: float, train: float, train_val: float, test_val: float, test: float) -> dict[str, float]:
    """The four terms; they add up with the goal error to the test error exactly."""
    return {
        "avoidable_bias": train - goal,
        "variance": train_val - train,
        "distribution_shift": test_val - train_val,
        "val_overfitting": test - test_val,
    }


def recommend(terms: dict[str, float], goal_met_tolerance: float = 0.0) -> dict[str, object]:
    """The largest term and the lecture's next steps for it; 'done' when no term is above tolerance."""
    term = max(TERMS, key=lambda t: terms[t])
    if terms[term] <= goal_met_tolerance:
        return {"term": "none", "steps": ["Goal met: every term is at or below zero"]}
    return {"term": term, "steps": NEXT_STEPS[term]}


def summarize(errors: dict[str, float], goal: float) -> dict[str, object]:
    """errors (keys ERROR_KEYS) -> {"goal", "errors", "terms", "recommendation"}: the run's JSON core."""
    missing = [k for k in ERROR_KEYS if k not in errors]
    if missing:
        raise KeyError(f"errors lack {missing}; need all of {ERROR_KEYS}")
    terms = decompose(goal, *(errors[k] for k in ERROR_KEYS))
    return {"goal": goal, "errors": {k: errors[k] for k in ERROR_KEYS}, "terms": terms,
            "recommendation": recommend(terms)}


def table(summary: dict, title: str = "Bias-variance decomposition") -> Table:
    """A rich table in the lecture's layout: errors, then the terms, then the next step."""
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("goal (irreducible) error", f"{summary['goal']:.2%}")
    for k in ERROR_KEYS:
        t.add_row(f"{k.replace('_', '-')} error", f"{summary['errors'][k]:.2%}")
    rec = summary["recommendation"]
    for k in TERMS:
        style = "bold red" if k == rec["term"] else ""
        t.add_row(k.replace("_", " "), f"{summary['terms'][k]:+.2%}", style=style)
    t.add_row("largest term", str(rec["term"]).replace("_", " "), style="bold")
    t.add_row("next step", str(rec["steps"][0]), style="bold")
    return t
