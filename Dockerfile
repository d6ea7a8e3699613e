# driftline: the service image (also used by the compose `publisher`).
#   docker build -t driftline .
#   docker run --rm -p 9108:9108 driftline            # serve with the baked-in config
#   docker run --rm driftline publish --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed, unprivileged uid/gid, so a bind-mounted state folder can be chowned to match.
ARG DRIFTLINE_UID=10001
ARG DRIFTLINE_GID=10001
RUN groupadd --system --gid "${DRIFTLINE_GID}" driftline \
    && useradd --system --uid "${DRIFTLINE_UID}" --gid driftline \
        --home-dir /var/lib/driftline --no-create-home --shell /usr/sbin/nologin driftline

WORKDIR /usr/src/driftline
COPY . .
RUN pip install --no-cache-dir . \
    && cd / && rm -rf /usr/src/driftline

# The default config (compose mounts its own over it). The state folder exists in the image
# and belongs to the service user, so a fresh named volume mounted there inherits that owner.
COPY deploy/driftline.docker.toml /etc/driftline/driftline.toml
RUN mkdir -p /var/lib/driftline/state \
    && chown -R driftline:driftline /var/lib/driftline

USER driftline
WORKDIR /var/lib/driftline
VOLUME ["/var/lib/driftline/state"]

# Prometheus metrics (/metrics) and the dashboard page (/).
EXPOSE 9108

ENTRYPOINT ["driftline"]
CMD ["serve", "--config", "/etc/driftline/driftline.toml"]
