# Stand-in for the kit's training base image (versions.yaml `training_python_image`,
# python:3.11-slim-bookworm) on machines that reach no container registry: Debian bookworm's
# own python3.11 on the locally built Debian base, tagged with the upstream name so
# cluster/kind/train.Dockerfile builds unchanged. `python` and `pip` are those of a venv on
# PATH (Debian's system Python refuses `pip install`, PEP 668), as they are in the upstream
# image. helpers.backend.kind.image_build stages ca/ (the machine's extra CA certificates)
# and pip.conf (the machine's pip settings, possibly empty) into the build context.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/python
COPY pip.conf /etc/pip.conf
ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN python --version && pip --version
CMD ["python3"]
