"""Backends: reference (numpy golden semantics), numba (JIT CPU kernels), cost (hardware targets and cost model)."""
