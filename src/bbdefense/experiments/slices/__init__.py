"""Demo slices, one module per part of the library; each registers itself with
:func:`bbdefense.experiments.demo.register_slice`."""
