"""Evaluation: relatedness scores with bootstrap CIs, Eq. 1 fusion, the `evaluate` command, reports, the training callback."""
