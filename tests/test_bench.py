"""The benchmark command and the fast-GPU code paths, on the CPU: `python -m pedestrian.bench` measures the
renderer and both training paths in one run and writes its figures; the GPU-resident data path (gpu_data) runs on
the CPU device with the same order and augmentation contract; trainer=gpu_fast falls back to the CPU with a clear
message and still trains."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import compose

from pedestrian.bench import RendererRuns, renderer_throughput, step_times
from pedestrian.bench import main as bench
from pedestrian.core.train import run
from pedestrian.data.datamodule import EpochSampler
from pedestrian.data.gpu_data import DeviceBatches, flip_translate


def test_bench_reports_both_paths_and_writes_figures(tmp_path, data_root):
    threads = torch.get_num_threads()
    try:
        result = bench(["--stages", "lenet", "--profile", "tiny", "--variants", "fp32,+device_data", "--epochs", "1",
                        "--repeats", "1", "--overhead-repeats", "1", "--render-n", "20", "--render-repeats", "3",
                        "--threads", "1",
                        "--data-root", str(data_root), "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert set(result["renderer"]) == {32, 64} and all(r > 0 for r in result["renderer"].values())
    for size, runs in result["renderer_runs"].items():  # the headline is the best of the runs, all reported
        assert len(runs) == 3 and result["renderer"][size] == max(runs)
    assert [r["variant"] for r in result["training"]] == ["fp32", "+device_data"]
    for row in result["training"]:
        assert row["lightning_img_s"] > 0 and row["bare_img_s"] > 0
        assert abs(row["ratio"] - row["lightning_img_s"] / row["bare_img_s"]) < 2e-3  # one round: the same
        assert 0 < row["ratio_from_overhead"] <= 1.5  # bare step / (bare step + Lightning's own cost)
        [rnd] = row["per_round"]  # one round: its medians are the row's, and its ratio the row's ratio
        assert abs(rnd["ratio"] - row["ratio"]) <= 1e-3 and rnd["lightning_ms"] > 0 and rnd["bare_ms"] > 0
    assert "lightning_overhead_ms_per_step" in result
    [js] = tmp_path.glob("bench-*.json")
    assert json.loads(js.read_text())["machine"] == result["machine"]
    assert "| lenet | LeNet | fp32 |" in js.with_suffix(".md").read_text()


def test_step_times_skip_warmup_first_steps_and_partial_batches():
    """Paired steps (batch size, Lightning s, bare s): an epoch's first step (it pays for the epoch's start), the
    warm-up epoch and a last partial batch are left out."""
    warm = [(4, 1.0, 1.5), (4, 2.0, 2.5)]
    epoch = [(4, 5.0, 6.0), (4, 2.0, 1.0), (4, 3.0, 2.5), (2, 1.0, 0.5)]
    assert step_times([warm, epoch], batch_size=4) == {"lightning": [2.0, 3.0], "bare": [1.0, 2.5]}
    assert step_times([warm, epoch], batch_size=4, warmup=0) == {"lightning": [2.0, 2.0, 3.0],
                                                                 "bare": [2.5, 1.0, 2.5]}


def test_device_batches_follow_the_sampler_and_resume():
    """Same order as the CPU loader's sampler; a mid-epoch resume yields exactly the remaining batches."""
    images = np.arange(10 * 4 * 4 * 3, dtype=np.uint8).reshape(10, 4, 4, 3)
    labels = np.arange(10) % 2

    def batches(skip_state=None):
        db = DeviceBatches(images, labels, 3, EpochSampler(10, (0, 42)), torch.device("cpu"), augment=True)
        db.sampler.set_epoch(2)
        if skip_state:
            db.load_state_dict(skip_state)
        return db, [(x.clone(), i.clone()) for x, _, i in db]

    db, full = batches()
    ref = EpochSampler(10, (0, 42))
    ref.set_epoch(2)
    assert [int(j) for _, i in full for j in i] == list(ref)
    assert db.state_dict() == {"epoch": 2, "batches_done": 4}
    _, rest = batches({"epoch": 2, "batches_done": 2})
    assert len(rest) == 2
    for (xa, ia), (xb, ib) in zip(full[2:], rest):
        assert torch.equal(ia, ib) and torch.equal(xa, xb)  # same images, same augmentation draws


def test_flip_translate_moves_pixels_as_asked():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.uint8).view(2, 1, 3, 3)
    out = flip_translate(x, torch.tensor([False, True]), torch.tensor([0, 1]), torch.tensor([1, 0]), pad=1)
    assert torch.equal(out[0, 0], torch.tensor([[0, 0, 1], [0, 3, 4], [0, 6, 7]], dtype=torch.uint8))
    assert torch.equal(out[1, 0], torch.tensor([[0, 0, 0], [11, 10, 9], [14, 13, 12]], dtype=torch.uint8))


def test_gpu_fast_falls_back_to_cpu_and_trains(tmp_path, data_root, capsys):
    """No GPU here: trainer=gpu_fast says so and runs the same code (device-resident data on the CPU)."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: trainer=gpu_fast runs on it, there is no fallback to test")
    res = run(compose("+stage=augment", "profile=tiny", "trainer=gpu_fast", "trainer.extras.compile=false",
                      "logger=none", f"data.root={data_root}", f"run_dir={tmp_path}"))
    assert "running on the CPU" in " ".join(capsys.readouterr().out.split())
    assert set(res["errors"]) == {"train", "train_val", "test_val", "test"}


def test_gpu_data_refuses_night_synth(tmp_path, data_root):
    with pytest.raises(ValueError, match="gpu_data=true cannot run data.night_synth"):
        run(compose("+stage=night_synth", "profile=tiny", "trainer=gpu_fast", "trainer.extras.compile=false",
                    "logger=none", f"data.root={data_root}", f"run_dir={tmp_path}"))


def test_renderer_runs_are_taken_one_at_a_time_up_to_repeats():
    """The bench spreads the renderer's runs over its length: sample() takes one per size, never more than
    `repeats`; finish() takes the rest."""
    r = RendererRuns((32, 64), 4, 3)
    r.sample()
    assert [len(v) for v in r.runs.values()] == [1, 1]
    for _ in range(4):
        r.sample()
    assert [len(v) for v in r.runs.values()] == [3, 3] and all(x > 0 for v in r.runs.values() for x in v)
    assert [len(v) for v in RendererRuns((64,), 4, 2).finish().values()] == [2]
    assert RendererRuns((64,), 0, 2).finish() == {}  # --render-n 0: no renderer figures


def test_renderer_throughput_reports_rate():
    assert renderer_throughput(16, n=20) > 0
