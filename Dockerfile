# The GPU image: `python -m pedestrian` on a CUDA PyTorch base whose torch is the project's (2.14.1, CUDA 13.0).
#   docker build -t pedestrian .
#   docker run --gpus all -v "$PWD/outputs:/app/outputs" -v "$PWD/data:/app/data" pedestrian +stage=resnet trainer=gpu
#   docker run --gpus all -e WANDB_API_KEY -v ... pedestrian +stage=resnet trainer=gpu   # W&B online
# The W&B key comes from the environment at run time only: never an ARG or ENV here (it would stay in the image).
ARG BASE_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
FROM ${BASE_IMAGE}

# Caches (torch.compile/Triton kernels, W&B staging, matplotlib) live on a volume, not in the container layer.
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/home/app \
    XDG_CACHE_HOME=/app/cache \
    TORCH_HOME=/app/cache/torch \
    TORCHINDUCTOR_CACHE_DIR=/app/cache/inductor \
    TRITON_CACHE_DIR=/app/cache/triton \
    MPLCONFIGDIR=/app/cache/matplotlib \
    WANDB_CACHE_DIR=/app/cache/wandb \
    WANDB_CONFIG_DIR=/app/cache/wandb-config \
    WANDB_DATA_DIR=/app/cache/wandb-data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY pedestrian ./pedestrian
COPY conf ./conf
# The project installed from its own files, with the very command CI runs (.ci/run); torch is the base image's.
RUN python3 -m pip install -q -e '.[dev]'

# A non-root user, uid 1000 (some Ubuntu bases already have one: then it is reused), owning only what it writes.
RUN mkdir -p /home/app /app/data /app/outputs /app/multirun /app/experiments /app/cache \
    && (getent passwd 1000 > /dev/null || useradd --uid 1000 --home-dir /home/app --no-create-home app) \
    && chown -R 1000:1000 /home/app /app/data /app/outputs /app/multirun /app/experiments /app/cache
USER 1000:1000
VOLUME ["/app/data", "/app/outputs", "/app/multirun", "/app/cache"]

ENTRYPOINT ["python", "-m", "pedestrian"]
CMD ["--help"]
