#!/bin/bash
# One device call: the doctor on a GPU. The casebook (bug-free and buggy user models through diagnose(), on
# cuda) and the bug zoo's training-step bugs on the ResNet stage with trainer=gpu. Results in $OUT.
set -u
source experiments/gpu/setup.sh
timeout ${LIMIT:-150} python3 -m pedestrian.doctor.casebook --device ${DEVICE:-cuda} --out /tmp/cb > $OUT/casebook.log 2>&1
echo "casebook rc=$? $((SECONDS-T0)) s"
cp /tmp/cb/casebook.md /tmp/cb/casebook.json $OUT/ 2>/dev/null
timeout ${LIMIT:-150} python3 -m pedestrian.doctor.matrix --out /tmp/m --bugs no_zero_grad,optimizer_wrong_params,lr_too_low,augment_at_eval \
  +stage=resnet profile=tiny trainer=${TRAINER:-gpu} logger=none > $OUT/matrix.log 2>&1
echo "matrix rc=$? $((SECONDS-T0)) s"
cp /tmp/m/matrix.md $OUT/matrix-resnet.md 2>/dev/null; cp /tmp/m/matrix.json $OUT/matrix-resnet.json 2>/dev/null
tail -4 $OUT/matrix.log; grep -E "^\| |bug-free|caught" /tmp/cb/casebook.md
echo "total $((SECONDS-T0)) s"
