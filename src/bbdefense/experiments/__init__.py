"""Experiments: the demo (main job) and, later, config-driven runs and paper suites."""
