"""Neuron redundancy of one-hidden-layer networks (docs/theory.md §4): rules, scores, merge-and-verify, cross-check.

For f(x) = A σ(W x + b) + c with m hidden neurons u_i = (w_i, b_i) and output weights a_i (column i of A),
θ is *redundant* when a network with fewer neurons has the same realization, on all inputs (function
level) or on the training inputs only (data level); otherwise it is *efficient* (Benning–Dereich).
:func:`neuron_redundancy` applies the reduction rules of the activation's class, scores how far θ is from
each redundant set, and proves every claim by construction (§4.4): it builds the smaller network with the
rule's merge formula and compares the outputs, on the data and on probe points. A merge that does not
reproduce the outputs to tol·(1 + max|f|) is not claimed.

Completeness (§4.2, §8.5): for tanh and sigmoid (Sussmann 1992), the quadratic activation (rank) and the
linear one (rank) the function-level rules are complete, so ``effective_width`` is the minimal width.
For ReLU and leaky ReLU it is an upper bound (the Dereich–Kassing kink-group reductions beyond antipodal
groups are not built). For softplus, GELU and SiLU the rules are sufficient conditions only.

:func:`redundancy_nullity_check` is the Hessian cross-check of §4.5: at a critical point the nullity of
the Hessian must be at least the rank of the null vectors that the redundancies and symmetries predict.

Modules: :mod:`.report` (results and rule names), :mod:`.network` (the network being merged, inputs and probe
points, merge-and-verify), :mod:`.rules` (per-neuron and pair rules, antipodal groups), :mod:`.reductions`
(rank, linear dependence, ReLU data-level rules), :mod:`.search` (the protocol, :func:`neuron_redundancy`),
:mod:`.nullity` (the Hessian cross-check), :mod:`.deep` (every hidden layer of a deep MLP, :func:`mlp_redundancy`).
"""

from .deep import MLPRedundancy, find_mlp, is_mlp, mlp_redundancy
from .nullity import NullityCheck, redundancy_nullity_check
from .report import (
    ALWAYS_ACTIVE,
    ANTIPODAL,
    CONSTANT,
    DATA,
    DEAD,
    DEPENDENCE,
    DUPLICATE,
    FUNCTION,
    LINEAR_ON_DATA,
    MIRRORED,
    MULTIPLE,
    PATTERN,
    POSITIVE_MULTIPLE,
    RANK,
    ZERO,
    OutputChange,
    RedundancyFinding,
    RedundancyReport,
    neurons_words,
)
from .search import neuron_redundancy

__all__ = [
    "MLPRedundancy",
    "NullityCheck",
    "OutputChange",
    "RedundancyFinding",
    "RedundancyReport",
    "find_mlp",
    "is_mlp",
    "mlp_redundancy",
    "neuron_redundancy",
    "redundancy_nullity_check",
    "neurons_words",
    # The values of RedundancyFinding.rule and .level, to select findings without spelling the strings.
    "ALWAYS_ACTIVE",
    "ANTIPODAL",
    "CONSTANT",
    "DATA",
    "DEAD",
    "DEPENDENCE",
    "DUPLICATE",
    "FUNCTION",
    "LINEAR_ON_DATA",
    "MIRRORED",
    "MULTIPLE",
    "PATTERN",
    "POSITIVE_MULTIPLE",
    "RANK",
    "ZERO",
]
