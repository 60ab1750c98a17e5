"""Defenses: owner-side wrappers (registry ``DEFENSES``) and third-party defenses (``ducd``, ...)."""
