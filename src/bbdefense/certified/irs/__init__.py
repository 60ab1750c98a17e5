"""IRS-Net (Kumar & Narayan, IJCNN 2022) and the Salman et al. denoiser: :class:`IRSNet` (estimator), training
in :mod:`.irs_net`, BPDA evaluation in :mod:`.bpda`."""

from .estimator import IRSNet

__all__ = ["IRSNet"]
