"""Evaluation: the lecture's bias-variance decomposition with two validation sets, and error analysis."""
