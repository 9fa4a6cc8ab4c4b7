# Sourced by the device scripts: the carried wheels (.whl/, see the device notes), the environment, and what the
# machine is. SKIP_PIP=1 skips the wheels (a dry run here).
T0=$SECONDS
export PYTHONUNBUFFERED=1 WANDB_MODE=offline WANDB_SILENT=true
[ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
echo "setup $((SECONDS-T0)) s"
