# The kit's training image for the kind cluster: the kit's own `python -m helpers.train`
# with the same library versions as the labs (constrained by requirements.lock), so the model
# trained on the cluster is the one lab 03 trains, and KServe's xgbserver (xgboost 2.1.x)
# loads it. helpers.backend.kind.images.ensure_training_image() builds it from a small staged context
# (helpers/, data/, requirements.lock, this file), tags it with that context's content hash
# and loads it into the kind nodes with `kind load docker-image`; pods never pull it.
ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE}

WORKDIR /app
COPY requirements.lock /tmp/requirements.lock
# Only what `python -m helpers.train` imports (pyyaml for helpers.versions, which
# helpers.model_store imports); -c pins each to the lock's version.
RUN pip install --no-cache-dir --disable-pip-version-check -c /tmp/requirements.lock \
        xgboost-cpu scikit-learn numpy matplotlib pyyaml \
    && rm /tmp/requirements.lock
COPY helpers/ /app/helpers/
COPY data/ /app/data/
ENV PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp
# Fail the build, not the cluster job, if the training code cannot run in this image.
# Alone, then as a group of 2 through XGBoost's collective on 127.0.0.1 (as the pods do).
RUN python -m helpers.train --output-dir /tmp/selftest \
    && python -m helpers.distributed_local --workers 2 --join-timeout 60 --output-dir /tmp/selftest \
    && rm -rf /tmp/selftest /tmp/matplotlib
# Not root: the model volume (kind's local-path provisioner) is world-writable.
USER 65532:65532
