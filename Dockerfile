# The Gantry service image: `docker build -t gantry .`
# BASE_IMAGE must be Debian-like with python3 (>= 3.11), python3-venv, git and ca-certificates.
# Where no registry is reachable, build from a locally imported base:
#   docker build --build-arg BASE_IMAGE=gantry-test-base:bookworm -t gantry .
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Certificates for a TLS-intercepting proxy between the build and PyPI: every *.pem placed in
# extra-ca/ is trusted by pip in this stage only (see extra-ca/README.md).
COPY extra-ca/ /tmp/extra-ca/
RUN cat /etc/ssl/certs/ca-certificates.crt /tmp/extra-ca/*.pem > /tmp/pip-ca.pem 2>/dev/null \
    || cp /etc/ssl/certs/ca-certificates.crt /tmp/pip-ca.pem
COPY pyproject.toml README.md /src/
COPY gantry /src/gantry
COPY bot /src/bot
COPY runner /src/runner
COPY config /src/config
COPY gateway /src/gateway
RUN python3 -m venv /opt/gantry \
    && PIP_CERT=/tmp/pip-ca.pem /opt/gantry/bin/pip install --no-cache-dir --quiet \
       --disable-pip-version-check /src

FROM ${BASE_IMAGE}
RUN command -v git >/dev/null \
    || (apt-get update && apt-get install -y --no-install-recommends git \
        && rm -rf /var/lib/apt/lists/*)
RUN useradd --system --uid 10001 --create-home --home-dir /home/gantry gantry \
    && mkdir -p /data && chown gantry:gantry /data
COPY --from=build /opt/gantry /opt/gantry
ENV PATH=/opt/gantry/bin:$PATH \
    GANTRY_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
USER gantry
WORKDIR /home/gantry
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["gantry"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
