"""Bayesian-optimisation core of InstructZero: coupled kernel, GP surrogate, EI maximisation, ask/tell loop.

Stateless by design: the runner holds the data and calls ``sobol_points`` then ``propose`` repeatedly.
"""

from engine.bo.acquisition import OptimizerName, log_expected_improvement, maximize_acquisition
from engine.bo.kernel import InstructionCoupledKernel
from engine.bo.loop import optimise_synthetic, propose, sobol_points
from engine.bo.surrogate import KernelName, fit_surrogate, standardise

__all__ = [
    "InstructionCoupledKernel",
    "KernelName",
    "OptimizerName",
    "fit_surrogate",
    "log_expected_improvement",
    "maximize_acquisition",
    "optimise_synthetic",
    "propose",
    "sobol_points",
    "standardise",
]
