"""The one result type every mutual-information estimator returns, and its error class."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import FaceprobeError


class EstimationError(FaceprobeError, ValueError):
    """Inputs an MI estimator cannot use (non-finite values, constant attribute, too few samples...).

    The message names the argument at fault (``X``, ``y`` or a hyper-parameter).
    """


@dataclass(frozen=True)
class MIResult:
    """A mutual-information estimate I(X; y) in nats, with its uncertainty and provenance.

    Attributes
    ----------
    estimate:
        The read-off value in nats (see each estimator's docstring for its read-off rule).
    ci_low, ci_high:
        Two-sided confidence interval (``ci_level``, 95% by default) from a bootstrap over the
        held-out evaluation split, conditional on the fitted critic / probe (training randomness
        is not included; re-fit with other ``random_state`` values to see it).
    n_samples:
        Samples given to ``fit`` (all splits).
    n_eval:
        Samples in the held-out split the estimate is computed on.
    wall_time_s:
        Seconds ``fit`` took, CI and permutation test included.
    p_value:
        Permutation p-value of H0 "X and y independent", ``(1 + #{null >= observed}) / (1 + B)``;
        ``nan`` when ``n_permutations=0``.
    estimator:
        Name of the estimator and bound, e.g. ``"MINE"``, ``"SMILE(tau=5)"``, ``"LinearProbe"``.
    attribute_kind:
        ``"continuous"`` or ``"discrete"``, as resolved from ``attribute_kind="auto"``.
    diagnostics:
        Free-form details: training curve summary, ``converged``, ``steps``, ``chosen_step``,
        chosen regularisation, PCA variance kept, null-distribution summary, ...
    """

    estimate: float
    ci_low: float
    ci_high: float
    n_samples: int
    n_eval: int
    wall_time_s: float
    p_value: float
    estimator: str
    attribute_kind: str
    diagnostics: dict[str, Any] = field(default_factory=dict)
    ci_level: float = 0.95

    @property
    def estimate_bits(self) -> float:
        return self.estimate / math.log(2.0)

    @property
    def ci_bits(self) -> tuple[float, float]:
        return self.ci_low / math.log(2.0), self.ci_high / math.log(2.0)

    def to_dict(self, diagnostics: bool = False) -> dict[str, Any]:
        """A flat dict for a results table (``diagnostics=True`` keeps the nested dict)."""
        row = asdict(self)
        if not diagnostics:
            row.pop("diagnostics")
        row["estimate_bits"] = self.estimate_bits
        return row

    def __str__(self) -> str:
        p = "n/a" if math.isnan(self.p_value) else f"{self.p_value:.3g}"
        return (f"{self.estimator}: I = {self.estimate:.4f} nats "
                f"[{self.ci_low:.4f}, {self.ci_high:.4f}] ({self.attribute_kind} y, "
                f"n_eval={self.n_eval}, p={p}, {self.wall_time_s:.2f} s)")
