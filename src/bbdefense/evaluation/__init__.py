"""The evaluation layer: turns attack runs and certification runs into per-image rows, curves and tables.
Used by the CLI, the config runner, the demo and the paper suites alike.

* :mod:`.attacks`: run an attack as an evaluation (batches, streamed rows with resume, robust accuracy vs queries).
* :mod:`.owner`: owner-side defenses under the attack suite (RFD Table 2 / UniG Table 1 layouts).
"""
