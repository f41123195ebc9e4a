# The registry image (also used by the example services in docker-compose.yml).
#
#   docker build -t service-discovery:local .
#   docker run --rm -p 3004:3004 -v sd-state:/var/lib/service-discovery \
#       -e SERVICE_DISCOVERY_SECRET=change-me service-discovery:local
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies and the packages first, the examples last, so editing an
# example does not reinstall the project.
COPY pyproject.toml README.md ./
COPY sd_core ./sd_core
COPY sd_etcd ./sd_etcd
COPY frontends ./frontends
COPY service_discovery ./service_discovery
RUN pip install ".[server]"
COPY examples ./examples

# Never run as root: a system user with no home, no shell, no password.
# The state directory is a volume, so a restarted container (or a new one on
# the same volume) comes back with every instance it had.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin registry \
    && mkdir -p /var/lib/service-discovery \
    && chown registry /var/lib/service-discovery
USER registry
VOLUME ["/var/lib/service-discovery"]

ENV SERVICE_DISCOVERY_HOST=0.0.0.0 \
    SERVICE_DISCOVERY_PORT=3004 \
    SERVICE_DISCOVERY_STATE_FILE=/var/lib/service-discovery/state.json
EXPOSE 3004

# python:slim has no curl; the standard library is enough for a probe. It asks
# the port the server listens on (SERVICE_DISCOVERY_PORT, as `docker run -e` may
# set it), on loopback, which the default host 0.0.0.0 includes.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('SERVICE_DISCOVERY_PORT') or '3004'; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=2).status == 200 else 1)"]

# Exec form: the server is PID 1 and gets SIGTERM directly, so it drains and
# stops cleanly on `docker stop`.
CMD ["service-discovery", "serve"]
