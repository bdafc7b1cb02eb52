# Kubeflow Integrations Labs. Quick start: `make run`, then `make test`.
# Every target sets up .venv from requirements.lock first (idempotent, stamp-guarded).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUILD  := build

.PHONY: help setup run test bench jupyter clean distclean lock lint student grade controlplane-build controlplane-up controlplane-down cluster-up cluster-down cluster-images test-cluster

help:
	@echo "make run      set up .venv, then run every lab headless on the embedded default"
	@echo "make test     set up .venv, then run the whole test suite"
	@echo "make bench    measure speed and memory into build/bench.json"
	@echo "make jupyter  JupyterLab on your own copies of the labs (my-labs/, made if missing), bound to 127.0.0.1"
	@echo "make jupyter INSTRUCTOR=1  JupyterLab on the instructor copies in labs/ (solutions, nbgrader)"
	@echo "make student  student copies of the labs (solutions cleared) into build/student/"
	@echo "make grade NB=path  grade a submitted notebook with nbval: per-exercise table + score"
	@echo "make controlplane-up    build (or reuse) and start the Docker-less control plane (BACKEND=kwok)"
	@echo "make controlplane-down  stop it (safe to run twice)"
	@echo "make cluster-up    create (or reuse) the kind cluster with Volcano, KServe and the Training Operator (BACKEND=kind)"
	@echo "make cluster-down  delete the kind cluster (safe to run twice)"
	@echo "make cluster-images  maintainers, no registry: build the kind node image and add-on images from source (cached)"
	@echo "make test-cluster    maintainers: images, cluster-up, cluster tests, labs on kind, cluster-down"
	@echo "make setup    create .venv from requirements.lock (every target does this first)"
	@echo "make lint     ruff over helpers/, tests/ and the notebooks"
	@echo "make lock     re-resolve requirements.lock after editing pyproject.toml"
	@echo "make controlplane-build  build the control plane's binaries with Go (skipped, with the reason, without Go)"
	@echo "make clean    remove build/ (keeps .venv and my-labs/)"
	@echo "make distclean  remove build/ and .venv"

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 14) else "Python 3.10-3.13 is required; found " + sys.version.split()[0] + ". Set PYTHON=python3.11 (for example).")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock uv
	@$(PY) -m uv pip install --quiet --python $(PY) -r requirements.lock
	@$(PY) -m uv pip install --quiet --python $(PY) --no-deps -e .
	@touch $(STAMP)
	@echo "set-up done: $(VENV) matches requirements.lock"

run: $(STAMP)
	@$(PY) -m helpers.runner --backend sim

# One pytest, three workers: one runs every kwok test, in order, against one control plane
# (--dist loadgroup; see tests/conftest.py) and mostly waits on the real schedulers, while
# the other two (the most 2 cores give) run the rest. The 25 slowest tests are listed.
test: $(STAMP) controlplane-build
	@$(PY) -m pytest -n 3 --dist loadgroup --durations=25

bench: $(STAMP)
	@$(PY) -m helpers.bench

# Learners get their own student copies in $(LEARNER_DIR) (made from labs/ when missing, never
# overwritten: they hold your answers; `make grade NB=my-labs/03_train_iris_xgboost.ipynb` grades
# one) and a JupyterLab without nbgrader (jupyter-config/learner switches its extensions off).
# Instructors: `make jupyter INSTRUCTOR=1` opens labs/ itself, solutions filled in, nbgrader on.
LEARNER_DIR ?= my-labs
JUPYTER_LAB = $(VENV)/bin/jupyter lab --ip=127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root,)
jupyter: $(STAMP)
ifdef INSTRUCTOR
	@$(JUPYTER_LAB) --notebook-dir=labs
else
	@$(PY) -m helpers.grading student --keep-existing --out "$(LEARNER_DIR)"
	@echo "your copies of the labs: $(LEARNER_DIR)/ (start with 00_setup.ipynb; instructors: make jupyter INSTRUCTOR=1)"
	@JUPYTER_CONFIG_PATH="$(CURDIR)/jupyter-config/learner" $(JUPYTER_LAB) --notebook-dir="$(LEARNER_DIR)"
endif

# Student copies: nbgrader's preprocessors clear the solutions and lock the check cells.
student: $(STAMP)
	@$(PY) -m helpers.grading student --out $(BUILD)/student

# Grade one submission: `make grade NB=build/student/00_setup.ipynb` (nbval, per-exercise table).
grade: $(STAMP)
	@$(PY) -m helpers.grading grade $(if $(NB),"$(NB)",) $(if $(JSON),--json "$(JSON)",)

lint: $(STAMP)
	@$(VENV)/bin/ruff check helpers tests labs

# Regenerate the lock after editing pyproject.toml (needs the registry).
lock: $(STAMP)
	@$(PY) -m uv pip compile --quiet --universal --python-version 3.10 --extra dev pyproject.toml -o requirements.lock

# The kind cluster (helpers/cluster.py; needs Docker, kind, kubectl and git): one control plane
# + 3 workers with fake GPUs, Volcano, cert-manager, KServe (Standard mode) and the Training
# Operator at the pins in cluster/versions.yaml. Idempotent: a re-run reuses what exists.
# Options: CLUSTER_ARGS="--only volcano" or "--timeout 900" or "--no-image".
cluster-up: $(STAMP)
	@PATH="$(CURDIR)/cluster/kind/.bin:$$PATH" $(PY) -m helpers.cluster up $(CLUSTER_ARGS)

cluster-down: $(STAMP)
	@PATH="$(CURDIR)/cluster/kind/.bin:$$PATH" $(PY) -m helpers.cluster down

# Maintainers on a machine with no container registry (README, "Maintainers: the kind path
# with no registry"). Neither is part of `make test`. The kind built here, if any, comes first.
KIND_BIN := $(CURDIR)/cluster/kind/.bin
cluster-images: $(STAMP)
	@PATH="$(KIND_BIN):$$PATH" $(PY) -m helpers.backend.kind.maintainer images

test-cluster: $(STAMP)
	@PATH="$(KIND_BIN):$$PATH" $(PY) -m helpers.backend.kind.maintainer test-cluster

clean:
	rm -rf $(BUILD) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# The Docker-less control plane (helpers/controlplane.py): real kube-apiserver, schedulers and
# Volcano built with Go into cluster/controlplane/.bin (reused while unchanged). Without Go,
# controlplane-build says why and succeeds, and the tests marked `kwok` skip with that reason.
controlplane-build: $(STAMP)
	@$(PY) -m helpers.controlplane build --if-go

controlplane-up: $(STAMP)
	@$(PY) -m helpers.controlplane up

controlplane-down: $(STAMP)
	@$(PY) -m helpers.controlplane down
