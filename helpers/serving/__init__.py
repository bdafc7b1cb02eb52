"""Serving the Iris model: KServe's Python model server locally, InferenceServices on a cluster.

Modules (import the one you need; only ``models`` and ``server`` import ``kserve``):

- :mod:`helpers.serving.isvc` - build, render and validate ``serving.kserve.io/v1beta1``
  InferenceService manifests.
- :mod:`helpers.serving.models` - ``kserve.Model`` classes for XGBoost (like KServe's
  xgbserver) and ONNX (onnxruntime), with input validation.
- :mod:`helpers.serving.server` - kserve's ``ModelServer`` bound to 127.0.0.1.
- ``python -m helpers.serving`` - the server process.
- :mod:`helpers.serving.local` - the notebook-side handle: start, wait ready, logs, stop.
- :mod:`helpers.serving.client` - :class:`~helpers.serving.client.Endpoint`, V1 and V2 on requests.
- :mod:`helpers.serving.deploy` - the labs' façade: publish a model, submit and withdraw an
  InferenceService, through the verbs of the backend object it is given (never a backend import).
- :mod:`helpers.serving.handwritten` - a deliberately minimal server, for contrast.
- :mod:`helpers.serving.diagram` - KServe's architecture as a picture.
- :mod:`helpers.serving.bench` - latency and throughput measurements (``make bench`` runs them
  through :mod:`helpers.tools.bench_serving`).

This package is pure KServe: it imports no kubernetes client (API model types only), no
``helpers.kube`` (but its constants) and no ``helpers.backend`` (tests/test_layering.py).
"""
