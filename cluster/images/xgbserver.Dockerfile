# KServe's XGBoost runtime (`kserve/xgbserver:<kserve pin>`, the image of the
# ClusterServingRuntime `kserve-xgbserver`), from KServe's own Python source at the pinned tag
# (python/kserve, python/storage and python/xgbserver out of the Go module cache), installed
# with pip on the training base stand-in. Versions are constrained by xgbserver's uv.lock
# (staged as constraints.txt); XGBoost is versions.yaml `kserve_xgboost`, as the CPU-only
# wheel (the upstream image's `xgboost` wheel adds CUDA's NCCL, unused here). Layout as in
# upstream's python/xgb.Dockerfile: PYTHONPATH=/xgbserver, `python -m xgbserver`, user 1000.
ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE}
ARG XGBOOST_VERSION
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY constraints.txt /tmp/constraints.txt
COPY kserve /kserve
COPY storage /storage
RUN pip install --no-cache-dir -c /tmp/constraints.txt /kserve /storage \
        "xgboost-cpu==${XGBOOST_VERSION}" \
    && rm /tmp/constraints.txt
COPY xgbserver /xgbserver
RUN useradd kserve -m -u 1000 -d /home/kserve
USER 1000
ENV PYTHONPATH=/xgbserver
RUN python -c "import xgbserver, xgboost, kserve; print('xgboost', xgboost.__version__)"
ENTRYPOINT ["python", "-m", "xgbserver"]
