"""Certified defenses of a third-party black box: the defender has only query access to the target and
builds a smoothed classifier around it (DUCD: a distilled surrogate, ZO-AE-DS: a denoiser trained with
zeroth-order gradients, IRS-Net: a UNet denoiser trained on a surrogate). Owner-side, inference-time
defenses (RFD, UniG, ...) are in :mod:`bbdefense.defenses`.
"""
