"""DUCD (Li et al., arXiv 2408.10647): distil a white-box surrogate from a black box under a query
budget, then certify it with randomized smoothing (noise-augmented fine-tuning, Algorithm 3).

* :mod:`.distill`: the query-budgeted distillation (Eq. 6 L1 on logits; log-probabilities; labels).
* :mod:`.evaluate`: surrogate evaluation (Tables I-II: accuracy, ratio, fidelity; Fig. 3 budget sweep).
* :mod:`.defense`: noise fine-tuning and the certified classifier of Algorithm 3 (DUCD / WUCD / RS).
* :mod:`.estimator`: :class:`DUCD`, the whole defense as an estimator (fit / certify / save / load).
"""

from .distill import DistillConfig, DistillResult, TransferSet, build_surrogate, distill, distill_loss
from .estimator import DUCD
from .evaluate import SurrogateMetrics, budget_sweep, evaluate_surrogate

__all__ = ["DUCD", "DistillConfig", "DistillResult", "SurrogateMetrics", "TransferSet", "budget_sweep",
           "build_surrogate", "distill", "distill_loss", "evaluate_surrogate"]
