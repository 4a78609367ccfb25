# Visual explanations of ImageNet classifiers: the Gradio web app (app.py).
#
#   docker build -t explain-app .
#   docker run --rm -p 7860:7860 explain-app                 # then open http://localhost:7860
#   docker run --rm --gpus all -p 7860:7860 explain-app      # GPU (CUDA wheels / CUDA base)
#
# Smaller CPU-only image: build with
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t explain-app:cpu .
# (PyPI's default torch wheels bundle CUDA libraries: several GB, but they also run on the CPU.)
#
# CUDA base instead of python:3.11-slim (the PyPI torch wheels already carry the CUDA runtime, so
# this is only needed for extra CUDA tooling); the base must provide Python 3.11 and pip:
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 ...
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Empty: PyPI's torch (CUDA build). https://download.pytorch.org/whl/cpu: CPU-only, much smaller.
ARG TORCH_INDEX_URL=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    MPLCONFIGDIR=/tmp/matplotlib \
    MALLOC_ARENA_MAX=2

WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY requirements.txt .
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --extra-index-url "$TORCH_INDEX_URL" -r requirements.txt; \
    else \
        pip install -r requirements.txt; \
    fi

# The application: engine, models, UI and example images.
COPY models/ models/
COPY explainers/ explainers/
COPY webapp/ webapp/
COPY assets/ assets/
COPY app.py .

# Non-root user; downloaded weights are cached in its home (mount a volume there to keep them:
# -v explain-cache:/home/app/.cache).
RUN useradd --create-home --uid 1000 app
USER app

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)" || exit 1

CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
