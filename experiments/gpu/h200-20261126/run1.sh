#!/bin/bash
# One device call: env check, full profile's 10k stages (trainer=gpu), GPU bench, CPU bench on two spare cores.
# PROFILE/STAGES/BENCH_ARGS/END override for a local dry run. Everything lands in $OUT.
set -u
T0=$SECONDS; END=${END:-525}; PROFILE=${PROFILE:-full}; STAGES=${STAGES:-lenet,deeper,resnet,resnet_lr}
left() { echo $(( END - (SECONDS - T0) )); }
cap() { local l; l=$(left); echo $(( l < $1 ? l : $1 )); }
export PYTHONUNBUFFERED=1 WANDB_MODE=offline WANDB_SILENT=true
if [ -d /tmp/site ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl; then :; else exit 3; fi
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
echo "cpus $(nproc)"; lscpu | grep -E "Model name|^CPU\(s\)|MHz" ; free -g | head -2
python3 -c "import torch,lightning,torchmetrics,hydra,albumentations,cv2,numpy;print('torch',torch.__version__,'lightning',lightning.__version__,'torchmetrics',torchmetrics.__version__,'albumentations',albumentations.__version__,'numpy',numpy.__version__,'cuda',torch.cuda.is_available())" || exit 4
python3 -c "import pedestrian.train, pedestrian.bench, pedestrian.ladder, pedestrian.report" || exit 5
echo "== setup done at $((SECONDS-T0)) s"

# CPU bench (torch on 1 thread) on cores 14-15, beside the GPU work on 0-13.
(CUDA_VISIBLE_DEVICES= timeout $(( $(left) - 25 )) taskset -c ${CPU_CORES:-14,15} python3 -m pedestrian.bench --out $OUT/cb \
   --repeats ${CPU_REPEATS:-4} --epochs 2 ${CPU_BENCH_ARGS:-} > $OUT/cpu_bench.log 2>&1; echo "cpu bench rc $?" >> $OUT/cpu_bench.log) &
CPU=$!
G="taskset -c ${GPU_CORES:-0-13}"

echo "== 1. ladder profile=$PROFILE trainer=gpu, stages $STAGES ($(left) s left)"
timeout $(cap 270) $G python3 -m pedestrian.ladder profile=$PROFILE trainer=gpu logger=csv --stages $STAGES --root /tmp/ladder ${LADDER_ARGS:-}
echo "ladder rc $? at $((SECONDS-T0)) s"
python3 -m pedestrian.report profile=$PROFILE --root /tmp/ladder --out /tmp/report
echo "== 2. GPU bench ($(left) s left)"
timeout $(( $(left) - 70 )) $G python3 -m pedestrian.bench --out $OUT/gb --repeats 2 --epochs 2 --render-n 0 ${BENCH_ARGS:---variants fp32,+bf16,+channels_last,+gpu_data}
echo "gpu bench rc $? at $((SECONDS-T0)) s"
echo "== 3. torch.compile, resnet ($(left) s left)"
timeout $(( $(left) - 20 )) $G python3 -m pedestrian.bench --out /tmp/compile --repeats 1 --epochs 2 --render-n 0 --stages resnet ${COMPILE_ARGS:---variants +compile}
echo "compile rc $? at $((SECONDS-T0)) s"
wait $CPU; tail -25 $OUT/cpu_bench.log
tar czf $OUT/rest.tgz --exclude='*.ckpt' --exclude='*.npz' -C /tmp ladder report compile 2>&1 | tail -2
echo "== done at $((SECONDS-T0)) s"; ls -R $OUT | head -20
