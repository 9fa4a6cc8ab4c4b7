"""The doctor on anyone's model: `diagnose(model, loader, loss_fn, ...)` and `python -m pedestrian.doctor
--entry module:build`, on models and data that ship offline (pedestrian.doctor.casebook)."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from conftest import ROOT, cli
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pedestrian.doctor import CHECKS, DoctorError, diagnose
from pedestrian.doctor import casebook as cb


def test_a_healthy_model_passes_every_check_and_the_report_saves(tmp_path):
    report = diagnose(**cb._tabular(cb.moons, 64, 3e-3)(), out_dir=tmp_path, name="moons")
    assert [r.check for r in report.results] == list(CHECKS)
    assert not report.failures, [(r.check, r.explanation) for r in report.failures]
    assert report.exit_code == 0 and len(report.passed) + len(report.warnings) == len(CHECKS)
    saved = json.loads(report.save().read_text())
    assert saved["model"] == "moons" and saved["exit_code"] == 0 and len(saved["checks"]) == len(CHECKS)
    known = report["known_results"].details
    assert known["model"]["accuracy"] > known["linear"]["accuracy"]  # two moons: a network beats a line


@pytest.mark.parametrize("name", [c.name for c in cb.BUGGY])
def test_bugs_in_the_users_step_or_model_are_caught_by_their_check(name, tmp_path):
    case = next(c for c in cb.BUGGY if c.name == name)
    torch.manual_seed(0)
    report = diagnose(**case.build(), checks=[case.check], out_dir=tmp_path)
    r = report[case.check]
    assert (r.status, r.diagnosis) == ("fail", case.diagnosis), r.explanation
    assert r.fixes and r.explanation and report.exit_code == 1


def test_the_same_model_without_the_bug_passes_those_checks(tmp_path):
    report = diagnose(**cb._digits_cnn(), checks=["modes", "training_step"], out_dir=tmp_path)
    assert [r.status for r in report.results] == ["pass", "pass"], [r.explanation for r in report.results]


def _data(n: int = 64, shape=(3, 8, 8), classes: int = 3):
    x, y = torch.randn(n, *shape), torch.arange(n) % classes
    return x, y, DataLoader(TensorDataset(x, y), batch_size=16)


def _cnn(classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, classes))


def test_bad_input_is_named_before_any_check(tmp_path):
    x, y, loader = _data()
    dict_loader = [{"image": x[:16], "label": y[:16]}]
    with pytest.raises(DoctorError, match=r"dict with keys \['image', 'label'\].*expected \(inputs, labels"):
        diagnose(_cnn(), dict_loader, out_dir=tmp_path)
    with pytest.raises(DoctorError, match="labels are float32"):
        diagnose(_cnn(), [(x[:16], y[:16].float())], out_dir=tmp_path)
    with pytest.raises(DoctorError, match="returned a tensor of shape \\(4,\\).*scalar"):
        diagnose(_cnn(), loader, nn.CrossEntropyLoss(reduction="none"), out_dir=tmp_path)
    with pytest.raises(DoctorError, match="returns 3 logits per input but num_classes=10"):
        diagnose(_cnn(), loader, num_classes=10, out_dir=tmp_path)
    with pytest.raises(DoctorError, match="labels run from 0 to 2; class indices must lie in 0..1"):
        diagnose(_cnn(2), loader, num_classes=2, out_dir=tmp_path)
    with pytest.raises(DoctorError, match="loader is empty"):
        diagnose(_cnn(), [], out_dir=tmp_path)
    with pytest.raises(DoctorError, match="returned a list; expected a torch.optim.Optimizer"):
        diagnose(_cnn(), loader, optimizer_factory=lambda p: list(p), out_dir=tmp_path)


def test_a_model_whose_forward_fails_gets_the_trace_not_a_traceback(tmp_path):
    _, _, loader = _data()
    broken = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(99, 3))  # 4*6*6 = 144 features, not 99
    report = diagnose(broken, loader, num_classes=3, out_dir=tmp_path)
    trace = report["run_trace"]
    assert (trace.status, trace.diagnosis) == ("fail", "shape_mismatch")
    assert "layer `2` (Linear)" in trace.explanation and "expects (*, 99)" in trace.explanation
    assert all(r.status == "skip" for r in report.results[1:])


ENTRY = """
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from pedestrian.doctor.casebook import _tabular, moons, step_without_backward

def build():
    return _tabular(moons, 64, 3e-3)()

def build_buggy():
    return {**build(), "step": step_without_backward}

def build_wrong():
    return 42
"""


def test_cli_entry_runs_on_a_users_module(tmp_path):
    (tmp_path / "my_model.py").write_text(textwrap.dedent(ENTRY))
    env = {"PYTHONPATH": str(ROOT)}  # run from the user's folder, as they would
    ok = cli("--entry", "my_model:build", "--out", str(tmp_path / "ok"), "overfit.max_steps=200", cwd=tmp_path,
             env=env, module="pedestrian.doctor")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert json.loads((tmp_path / "ok" / "doctor.json").read_text())["exit_code"] == 0
    bad = cli("--entry", str(tmp_path / "my_model.py") + ":build_buggy", "--checks", "training_step", "--out",
              str(tmp_path / "bad"), cwd=tmp_path, env=env, module="pedestrian.doctor")
    assert bad.returncode == 1 and "no backward" in bad.stdout, bad.stdout[-3000:]
    wrong = cli("--entry", "my_model:build_wrong", cwd=tmp_path, env=env, module="pedestrian.doctor")
    assert wrong.returncode == 2 and "build_wrong() returned int; expected a dict with model and loader" \
        in wrong.stderr
    missing = cli("--entry", "no_such_module:build", cwd=tmp_path, env=env, module="pedestrian.doctor")
    assert missing.returncode == 2 and "importing no_such_module failed" in missing.stderr


@pytest.mark.slow
def test_the_casebook_has_no_false_alarm_and_catches_every_bug(tmp_path):
    """experiments/doctor/casebook.md: every bug-free case without a failed check, every bug caught, each < 60 s."""
    assert cb.main(["--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "casebook.json").read_text())
    assert all(r["seconds"] < 60 for r in rows.values()), {n: r["seconds"] for n, r in rows.items()}


def test_a_trained_model_is_not_a_false_alarm_at_init_when_marked_pretrained(tmp_path):
    case = cb._tabular(cb.moons, 64, 3e-3)()
    model, loader = case["model"], case["loader"]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    fresh = diagnose(model, loader, checks=["init_loss"], out_dir=tmp_path / "a")["init_loss"]
    assert (fresh.status, fresh.diagnosis) == ("fail", "loss_too_low")  # trained: far below ln 2 ...
    marked = diagnose(model, loader, checks=["init_loss"], out_dir=tmp_path / "b", pretrained=True)["init_loss"]
    assert marked.status == "pass" and marked.details["pretrained"]  # ... as it should be for a fine-tuning start


class _NoiseGradient(nn.Module):
    """A healthy MLP plus a parameter whose gradient is rounding noise (like a conv bias right before batch
    norm on a GPU): its update is far below float32 resolution, so it never changes."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = cb.mlp(2, 2, 32)
        self.noise = nn.Parameter(torch.ones(4))

    def forward(self, x):
        return self.mlp(x) + 1e-12 * self.noise.sum()


def test_a_rounding_noise_gradient_is_not_an_optimizer_on_the_wrong_parameters(tmp_path):
    x, y = cb.moons(512)
    loader = cb._loaders(x, y)
    report = diagnose(_NoiseGradient(), loader, optimizer_factory=cb.sgd(0.05), checks=["training_step"],
                      out_dir=tmp_path)
    r = report["training_step"]
    assert r.status == "pass", r.explanation
    assert r.details["unchanged"] == ["noise"] and r.details["gradient_but_unchanged"] == []


def test_what_a_user_passes_is_left_as_it_was_and_common_shapes_are_taken(tmp_path):
    from collections import namedtuple

    Batch = namedtuple("Batch", "x y")
    x, y = cb.digits(flat=False)
    batches = [Batch(torch.as_tensor(x[i:i + 64]), torch.as_tensor(y[i:i + 64])) for i in range(0, 1024, 64)]
    model = cb.SmallCNN(1, 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def step(model, batch, optimizer):  # returns a number, as many loops do
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(batch.x), batch.y)
        loss.backward()
        optimizer.step()
        return loss.item()
    report = diagnose(model, batches, step=step, checks=["run_trace", "overfit_batch", "training_step"],
                      out_dir=tmp_path)
    assert not report.failures, [(r.check, r.explanation) for r in report.failures]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics included
    assert model.training  # not left in eval mode by the doctor's probes


def test_inputs_that_cannot_be_examined_get_a_message_that_says_what_to_pass(tmp_path):
    x, y, loader = _data()
    with pytest.raises(DoctorError, match="can be read only once.*pass a DataLoader or a list"):
        diagnose(_cnn(), ((x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)), out_dir=tmp_path)
    with pytest.raises(DoctorError, match="1 logit per input.*2 logits and cross-entropy"):
        diagnose(_cnn(1), loader, out_dir=tmp_path)
    with pytest.raises(DoctorError, match=r"step\(model, batch, optimizer\) returned None"):
        diagnose(_cnn(), loader, step=lambda model, batch, optimizer: None, out_dir=tmp_path)
    with pytest.raises(KeyError, match="'known_results' was not run"):
        diagnose(_cnn(), loader, checks=["init_loss"], out_dir=tmp_path)["known_results"]
