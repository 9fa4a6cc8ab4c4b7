#!/bin/bash
# One device call: the CPU profile's whole ladder for several difficulty settings at once, on one GPU
# (trainer=gpu, fp32), to choose the scenes' calibration, and pedestrian.calibrate runs. Results in $OUT.
set -u
T0=$SECONDS
export PYTHONUNBUFFERED=1 WANDB_MODE=offline WANDB_SILENT=true OMP_NUM_THREADS=2
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
python3 -c "import pedestrian.train, pedestrian.ladder, pedestrian.report" || exit 5
echo "setup $((SECONDS-T0)) s"
C="profile=cpu trainer=gpu trainer.precision=32-true logger=csv data.render_workers=2 trainer.extras.threads=2 data.root=/tmp/data"
# $1: a variants file, one "NAME OVERRIDES..." a line: NAME starting with cal_ runs pedestrian.calibrate, others a ladder
LIMIT=${LIMIT:-400}
declare -A V
while read -r name rest; do
  [ -z "$name" ] || [ "${name:0:1}" = "#" ] && continue
  V[$name]="$rest"
  if [ "${name:0:4}" = cal_ ]; then
    timeout $LIMIT python3 -m pedestrian.calibrate $C $rest --out /tmp/cal/$name > /tmp/lad_$name.log 2>&1 &
  else
    timeout $LIMIT python3 -m pedestrian.ladder $C $rest --root /tmp/lad/$name > /tmp/lad_$name.log 2>&1 &
  fi
done < "$1"
wait
echo "runs done $((SECONDS-T0)) s"
for name in "${!V[@]}"; do
  [ "${name:0:4}" = cal_ ] && { echo "== $name: ${V[$name]}"; sed -n '/## The reference/,$p' /tmp/cal/$name/CALIBRATION.md; continue; }
  python3 -m pedestrian.report profile=cpu --root /tmp/lad/$name --out /tmp/rep/$name > /dev/null 2>&1
  echo "== $name: ${V[$name]}"; tail -3 /tmp/lad_$name.log | head -1
  python3 experiments/gpu/stage_table.py /tmp/lad/$name
  grep -E "^\| \`.*\` → |of 9 steps" /tmp/rep/$name/RESULTS.md | sed 's/|[^|]*|[^|]*|//' | cut -c1-140
done
tar czf $OUT/sweep.tgz --exclude='*.ckpt' --exclude='*.npz' -C /tmp lad rep cal 2>/dev/null
tar czf $OUT/logs.tgz -C /tmp $(cd /tmp && ls lad_*.log) 2>/dev/null
echo "done $((SECONDS-T0)) s"
