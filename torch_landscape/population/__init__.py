"""Population objectives: losses that are expectations over an input distribution, in closed form.

- :func:`arccos_kernel`, :func:`gaussian_relu_loss` — E[relu(w·x) relu(v·x)] for x ~ N(0, I) and the
  ReLU teacher–student loss built from it (docs/theory.md §9);
- :class:`GaussianReLUObjective` — that loss as an :class:`~torch_landscape.objective.Objective`, for the
  Hessian, classification, PL and one-point tools; :func:`relu_network` builds its student and teacher.
"""

from .kernel import arccos_kernel, gaussian_relu_loss
from .objective import GaussianReLUObjective, relu_network

__all__ = ["GaussianReLUObjective", "arccos_kernel", "gaussian_relu_loss", "relu_network"]
