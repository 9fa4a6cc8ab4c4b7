#!/bin/bash
# Second device call: why a full-profile stage is slow on the GPU (Lightning's simple profiler, channels_last on/off),
# and the GPU bench for deeper and resnet.
set -u
T0=$SECONDS; END=${END:-230}
left() { echo $(( END - (SECONDS - T0) )); }
export PYTHONUNBUFFERED=1 WANDB_MODE=offline
[ -d /tmp/site ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD
for cl in true false; do
  echo "== deeper, 3 epochs, channels_last=$cl ($(left) s left)"
  t=$SECONDS; timeout 75 python3 -m pedestrian +stage=deeper profile=full trainer=gpu logger=csv trainer.max_epochs=3 \
     trainer.extras.channels_last=$cl +trainer.profiler=simple run_dir=/tmp/d_$cl 2>&1 | grep -vE "Tip|albumentations|fetch_version|warn" | grep -E "Action|run_training_epoch|run_training_batch|validation|evaluation_loop|save_checkpoint|on_train_epoch_end|on_validation_end|optimizer_step|\[Strategy\]|Total|train_dataloader_next|val_next|results|\[LightningModule\]" | sed -E 's/[[:space:]]+/ /g; s/\{[^}]*\}//' | cut -c1-140 | head -22; echo "wall $((SECONDS-t)) s"
done
echo "== bench deeper,resnet ($(left) s left)"
timeout $(( $(left) - 5 )) python3 -m pedestrian.bench --out $OUT/gb --stages resnet,deeper --repeats 1 --epochs 1 --render-n 0 --variants +bf16,+channels_last 2>&1 | grep -E "'(stage|variant|lightning_img_s|bare_img_s|ratio)'|wrote|Error"
echo "== done at $((SECONDS-T0)) s"
