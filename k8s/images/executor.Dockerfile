# The executor: Python, acecoder without the model stacks, firejail and bubblewrap, and the
# toolchains of every language it runs (C, C++, Java, JavaScript, Rust, Go: Debian's packages,
# which the sandbox exposes read-only to every program; `Info` lists what it found).
# Build from the repository root: docker build -f k8s/images/executor.Dockerfile -t IMAGE .
# It runs as root in its pod (it drops every program to its own unprivileged uid; see the
# Deployment's capabilities); nothing else in the image is writable at run time.
FROM python:3.11.11-slim-bookworm AS build
# a compiler for the zygote's loop in C (executor/sandbox/_zygote.c)
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc=4:12.2.0-3 libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/acecoder
COPY pyproject.toml README.md /src/
COPY acecoder /src/acecoder
COPY executor /src/executor
COPY clients /src/clients
COPY server /src/server
COPY trainer /src/trainer
COPY proto /src/proto
# [http]: SandboxFusion's POST /run_code (--http-port), for verl; [programs]: what LeetCode-style
# programs may import (sortedcontainers)
RUN /opt/acecoder/bin/pip install --no-cache-dir '/src[http,programs]'

FROM python:3.11.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends firejail=0.9.72-2+deb12u1 bubblewrap=0.8.0-2+deb12u1 \
       gcc=4:12.2.0-3 g++=4:12.2.0-3 libc6-dev default-jdk-headless=2:1.17-74 \
       nodejs rustc=1.63.0+dfsg1-2 golang-go=2:1.19~1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/acecoder /opt/acecoder
ENV PATH=/opt/acecoder/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# C++'s <bits/stdc++.h>, precompiled by this image's g++ for the executor's flags (the image is
# read-only at run time, so it is built here; see executor/pch.py)
RUN python -m acecoder.executor.pch
EXPOSE 50051 50061 8080 9090
ENTRYPOINT ["acecoder"]
CMD ["serve", "executor", "--host=0.0.0.0"]
