# The executor: Python, acecoder without the model stacks, firejail and bubblewrap.
# Build from the repository root: docker build -f k8s/images/executor.Dockerfile -t IMAGE .
# It runs as root in its pod (it drops every program to its own unprivileged uid; see the
# Deployment's capabilities); nothing else in the image is writable at run time.
FROM python:3.11.11-slim-bookworm AS build
RUN python -m venv /opt/acecoder
COPY pyproject.toml README.md /src/
COPY acecoder /src/acecoder
COPY executor /src/executor
COPY clients /src/clients
COPY server /src/server
COPY trainer /src/trainer
COPY proto /src/proto
RUN /opt/acecoder/bin/pip install --no-cache-dir /src

FROM python:3.11.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends firejail=0.9.72-2+deb12u1 bubblewrap=0.8.0-2+deb12u1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/acecoder /opt/acecoder
ENV PATH=/opt/acecoder/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
EXPOSE 50051 50061 9090
ENTRYPOINT ["acecoder"]
CMD ["serve", "executor", "--host=0.0.0.0"]
