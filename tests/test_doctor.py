"""The doctor end to end: the detection matrix (every bug in the zoo caught by the check that should catch it,
with the right diagnosis; the clean config passes every check), the real CLI (exit codes, doctor.json, images,
the W&B offline run), and the bugs reaching real training runs.

The fast matrix runs in this process on a data source whose answers are known: scikit-learn's digits as a
two-class task ("5 or more?", 32 px), with the tiny profile's settings, through the real Hydra composition,
build() and checks. The CPU-profile matrix on the pedestrian scenes is the slow test at the bottom.
"""

from __future__ import annotations

import csv
import json

import pytest
import wandb_offline
from conftest import cli, compose

from pedestrian.core import bugs
from pedestrian.doctor import CHECKS, diagnose_stage

DIGITS = {"_target_": "pedestrian.doctor.known_results.DigitsDataModule", "image_size": 32, "batch_size": 32,
          "binary": True, "normalize": "once", "seed": 0}


def digits_cfg(tmp_path, *overrides: str):
    cfg = compose("+doctor=default", "+stage=lenet", "profile=tiny", "logger=none", f"run_dir={tmp_path}",
                  f"doctor.out_dir={tmp_path}", "trainer.extras.threads=1", *overrides)
    cfg.data = DIGITS  # the same stage, model, optimizer and checks; a data source with known answers
    return cfg


def test_clean_config_passes_every_check(tmp_path):
    results = diagnose_stage(digits_cfg(tmp_path)).results
    assert [r.check for r in results] == list(CHECKS)
    failed = {r.check: (r.diagnosis, r.explanation) for r in results if r.status == "fail"}
    assert not failed, failed
    known = next(r for r in results if r.check == "known_results").details
    assert known["model"]["auc"] > known["linear"]["auc"] and known["model"]["z"] >= 3
    assert known["linear"]["accuracy"] > 0.8 > 0.6 > known["majority_accuracy"]  # the known answers of this data
    assert known["digits_accuracy"] >= 0.97
    assert (tmp_path / "inputs_batch.png").stat().st_size > 0 and (tmp_path / "overfit_batch_loss.png").exists()


@pytest.mark.parametrize("bug", bugs.names())
def test_each_bug_is_caught_by_its_check(bug, tmp_path):
    spec = bugs.load(bug)
    cfg = digits_cfg(tmp_path, f"+bug={bug}", f"doctor.checks=[{spec.check}]")
    report = diagnose_stage(cfg)
    results, verdict = report.results, report.bug
    assert verdict["caught"], (verdict, results[-1].explanation)
    assert results[-1].fixes and results[-1].explanation  # a diagnosis comes with the lecture's causes / fixes


def test_the_zoo_is_the_lectures_list_and_each_bug_is_described():
    assert set(bugs.names()) == {"softmax_before_loss", "no_normalize", "double_normalize", "shuffled_labels",
                                 "flipped_loss_sign", "eval_in_train_mode", "broadcast_loss", "lr_explodes",
                                 "frozen_weights", "wrong_init", "lr_too_low", "no_zero_grad",
                                 "optimizer_wrong_params", "dead_relu", "label_leak", "augment_at_eval"}
    for name in bugs.names():
        spec = bugs.load(name)
        assert spec.name == name and spec.check in CHECKS and len(spec.in_the_wild) > 80


def test_cli_reports_a_bug_writes_json_images_and_a_wandb_run(tmp_path, data_root):
    """The real CLI on the pedestrian scenes: a flipped loss sign is caught, exit code 1."""
    out = tmp_path / "doc"
    r = cli("+stage=lenet", "profile=tiny", f"data.root={data_root}", "+bug=flipped_loss_sign",
            "doctor.checks=[run_trace,inputs,init_loss,overfit_batch]", f"doctor.out_dir={out}", "group=pytest-doctor",
            "trainer.extras.threads=1",
            module="pedestrian.doctor")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert "goes up" in r.stdout and "flipped sign" in r.stdout  # the diagnosis and the lecture's cause
    report = json.loads((out / "doctor.json").read_text())
    by = {c["check"]: c for c in report["checks"]}
    assert by["overfit_batch"]["status"] == "fail" and by["overfit_batch"]["diagnosis"] == "goes_up"
    assert by["run_trace"]["status"] == "pass" and by["run_trace"]["details"]["layers"]
    assert report["bug"]["caught"] and report["exit_code"] == 1
    assert (out / "inputs_batch.png").exists() and (out / "overfit_batch_loss.png").exists()

    [log] = wandb_offline.run_files(out)
    info = wandb_offline.run_info(log)
    assert info["job_type"] == "doctor" and info["group"] == "pytest-doctor" and "bug:flipped_loss_sign" in info["tags"]
    summary = wandb_offline.summary(log)
    assert summary["doctor/overfit_batch"] == "fail" and summary["doctor/run_trace"] == "pass"
    assert summary["doctor/bug_caught"] is True and summary["doctor/exit_code"] == 1


def test_cli_exit_codes_for_a_clean_stage_and_a_config_error(tmp_path, data_root):
    from pedestrian.doctor.__main__ import main

    code = main(["+stage=resnet", "profile=tiny", f"data.root={data_root}", "logger=none", "trainer.extras.threads=1",
                 "doctor.checks=[run_trace,inputs,modes,grad_dependency]", f"doctor.out_dir={tmp_path}"])
    assert code == 0
    assert main(["+stage=lenet", "optim.lr=-1", f"doctor.out_dir={tmp_path}"]) == 2
    assert main(["+stage=no_such_stage"]) == 2
    assert main(["+stage=lenet", "doctor.checks=[astrology]", f"doctor.out_dir={tmp_path}"]) == 2


def test_data_subcommand_dispatches_to_the_data_checks(capsys):
    import importlib.util

    from pedestrian.doctor.__main__ import main

    if importlib.util.find_spec("pedestrian.doctor.data") is None:
        assert main(["data", "--help"]) == 2 and "not installed" in capsys.readouterr().err
        return
    with pytest.raises(SystemExit) as e:  # argparse's --help of pedestrian.doctor.data:main
        main(["data", "--help"])
    assert e.value.code == 0 and "python -m pedestrian.doctor data" in capsys.readouterr().out


@pytest.mark.parametrize("bug,column,sign", [("flipped_loss_sign", "train/loss_epoch", -1),
                                             ("lr_explodes", "lr-Adam", 10.0)])
def test_bugs_reach_real_training_runs(bug, column, sign, tmp_path, data_root):
    """`python -m pedestrian +stage=lenet +bug=NAME` trains with the bug: the logged figures show it."""
    from pedestrian.core.train import run

    cfg = compose("+stage=lenet", "profile=tiny", f"data.root={data_root}", f"run_dir={tmp_path}", "logger=csv",
                  "trainer.max_epochs=1", "trainer.extras.threads=1", f"+bug={bug}")
    run(cfg)
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    values = [float(r[column]) for r in rows if r.get(column)]
    assert values
    if bug == "flipped_loss_sign":
        assert all(v < 0 for v in values)  # the optimiser minimised the negative cross-entropy
    else:
        assert values[0] == sign  # the optimizer Lightning built got the exploding learning rate


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["lenet", "resnet"])
def test_detection_matrix_on_the_cpu_profile(stage, tmp_path, data_root):
    """The README's matrix: 9 of 9 bugs caught on the pedestrian scenes (CPU profile), no clean-stage failure."""
    from pedestrian.doctor.matrix import run_matrix

    m = run_matrix([f"+stage={stage}", "profile=cpu", f"data.root={data_root}"], out=tmp_path)
    assert m["caught"] == m["n_bugs"] == 9, m["bugs"]
    assert m["false_alarms"] == [], m["rows"]["clean"]
