#!/bin/bash
# One device call: the full profile's ladder (64 px, 10k then 250k training images) on one GPU, as two
# processes side by side (the four 10k stages; the 250k chain and night), then its report. Results in $OUT.
set -u
source experiments/gpu/setup.sh
LIMIT=${LIMIT:-500}
R=/tmp/ladder-full
C="profile=${PROFILE:-full} trainer=gpu logger=csv data.root=/tmp/data"
timeout $LIMIT python3 -m pedestrian.ladder $C data.num_workers=4 data.render_workers=6 \
  --stages lenet,deeper,resnet,resnet_lr --root $R > $OUT/small.log 2>&1 &
timeout $LIMIT python3 -m pedestrian.ladder $C data.num_workers=10 data.render_workers=10 \
  --stages more_data,weight_decay,augment,tuned,night_synth,night_finetune --root $R > $OUT/large.log 2>&1 &
wait
echo "ladders done $((SECONDS-T0)) s"
python3 -m pedestrian.report profile=${PROFILE:-full} --root $R --out /tmp/rep > $OUT/report.log 2>&1
cp /tmp/rep/RESULTS.md /tmp/rep/results.json $OUT/ 2>/dev/null
(cd $R && tar czf $OUT/stages.tgz --exclude='*.ckpt' --exclude='*.npz' --exclude='wandb' --exclude='_superseded' .)
python3 experiments/gpu/stage_table.py $R
echo "total $((SECONDS-T0)) s"
