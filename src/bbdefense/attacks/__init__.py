"""Attacks. The functional PGD core (:mod:`bbdefense.attacks.pgd_core`) is shared with adversarial training."""
