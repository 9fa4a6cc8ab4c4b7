"""Hyperparameter search the lecture's way: grid, random, coarse-to-fine random (the lecture's recommendation)
and Bayesian (Optuna's TPE), on one Optuna study that many worker processes share.

    space.py      the hyperparameters: config key, range, scale (conf/search/space/*.yaml)
    methods.py    grid, random, coarse_to_fine, bayes: which points the trials try
    study.py      the storage (SQLite file or any SQLAlchemy URL), the plan of trials, the worker loop
    objective.py  a trial = pedestrian.core.train.run with the trial's values and a budget, pruned per epoch
    report.py     trials.csv, plots, best_override.yaml, conf/stage/NAME.yaml
    __main__.py   python -m pedestrian.search +stage=NAME search=NAME [--workers N] [--write-stage NAME]
    bench.py      the two figures: coarse-to-fine vs a 16-point grid, and 1 vs 2 workers
"""
