"""Demo slices, one module per part of the library; each registers itself with
:func:`bbdefense.experiments.context.register_slice`
(imported from :mod:`bbdefense.experiments.context`, never from :mod:`bbdefense.experiments.demo`)."""
