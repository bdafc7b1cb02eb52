"""Everything that talks to a Kubernetes API server, and nothing else.

* :mod:`helpers.kube.client` - the kubernetes client: connect, apply/delete, bounded waits
  with diagnostics, events, and the one 404/409 check (:func:`~helpers.kube.client.status_is`).
* :mod:`helpers.kube.kubectl` - the ``kubectl``/``kind``/``docker`` runner with transient-error
  retries, and ``kubectl port-forward``.
* :mod:`helpers.kube.names` - names and constants, each written once (the fake GPU resource,
  namespaces, the kind cluster's name and context, the kwok kubeconfig, timeouts).

Only this package imports the kubernetes client or runs kubectl (``tests/test_layering.py``);
``names`` imports nothing, so the pure model packages may read its constants.
"""
