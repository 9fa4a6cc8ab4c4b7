"""The lab guide (experiments/README.md) cannot rot: every command in its ```bash blocks runs here, in order, as
a real subprocess, with the CPU profile swapped for the tiny one (profile=cpu -> profile=tiny, .../cpu paths ->
.../tiny), the shared scene cache and CSV logging only. The commands run in the workspace of the tiny ladder
that test_ladder.py made, so the guide's ladder command finds every stage complete (and must skip them all)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from conftest import ROOT, cli
from test_ladder import ONE_THREAD, tiny_ladder

GUIDE = ROOT / "experiments" / "README.md"
EXPECT = re.compile(r"#\s*exits?\s+(\d+)")  # a command may say "# exits 1" (a check that must fail)


def guide_commands(text: str) -> list[tuple[str, int]]:
    """(command, expected exit code) for every line of every ```bash block (comments and blanks skipped)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            cmd, _, comment = line.partition("#")
            if cmd.strip():
                m = EXPECT.search("#" + comment) if comment else None
                out.append((cmd.strip(), int(m.group(1)) if m else 0))
    return out


def tiny(cmd: str, data_root: Path) -> tuple[str, list[str]]:
    """A guide command -> (module, args) on the tiny profile and the shared scene cache."""
    words = shlex.split(cmd)
    assert words[:2] == ["python", "-m"], f"guide commands are `python -m pedestrian...` commands: {cmd!r}"
    module, args = words[2], [w.replace("profile=cpu", "profile=tiny") for w in words[3:]]
    args = [re.sub(r"(^|/)cpu(/|-|$)", r"\1tiny\2", a) if "/" in a else a for a in args]
    if module in ("pedestrian", "pedestrian.ladder", "pedestrian.doctor"):
        args += [f"data.root={data_root}", "logger=csv"]  # test_ladder.py covers W&B; this saves its start-up
    return module, args


def test_guide_commands_use_the_cpu_profile_and_cover_the_ladder():
    text = GUIDE.read_text()
    cmds = [c for c, _ in guide_commands(text)]
    assert any(c.startswith("python -m pedestrian.ladder profile=cpu") for c in cmds)
    assert any(c.startswith("python -m pedestrian.report profile=cpu") for c in cmds)
    assert any("error_analysis" in c for c in cmds)
    for stage in ("lenet", "deeper", "resnet", "resnet_lr", "more_data", "weight_decay", "augment", "tuned",
                  "night_synth", "night_finetune"):
        assert f"`{stage}`" in text, f"the guide never mentions the stage {stage}"
    for c in cmds:  # so that the test's swap to the tiny profile means something
        if c.split()[2] in ("pedestrian", "pedestrian.ladder", "pedestrian.doctor", "pedestrian.report"):
            assert "profile=cpu" in c, f"{c!r}: say profile=cpu (the test runs it with profile=tiny)"


def test_every_guide_command_runs(data_root):
    ws, first = tiny_ladder(data_root)
    assert first.returncode == 0, first.stderr[-3000:]
    for cmd, expected in guide_commands(GUIDE.read_text()):
        module, args = tiny(cmd, data_root)
        r = cli(*args, module=module, cwd=ws, timeout=600, env=ONE_THREAD)
        assert r.returncode == expected, f"{cmd}\n-> {module} {args}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        if module == "pedestrian.ladder" and "--stages" not in args and "--root" not in args:
            last = json.loads((ws / "outputs" / "ladder" / "tiny" / "ladder.json").read_text())["invocations"][-1]
            assert set(last["actions"].values()) == {"skipped"}, "the guide's ladder reran a completed stage"
    assert (ws / "experiments" / "tiny" / "RESULTS.md").exists()
