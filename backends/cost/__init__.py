"""The cost model: hardware targets as data and a per-node latency / energy / traffic model.

Pure data and arithmetic: nothing here runs a kernel. Every figure it returns is emulated
(predicted from a target file), and labelled so.

    from tensorsmith.backends.cost import estimate, load_target, list_targets
    table = estimate(graph, "gpu-a100")
    print(table)                 # per node and total
    table.to_json()              # or table.to_dicts()
"""

from .decisions import Decision, choose_precision, choose_sparsity
from .energy import DEFAULT_MAC_PJ, DEFAULT_OP_PJ, HOROWITZ_OP_PJ
from .estimate import EXIT_PROBABILITY_KEY, EXIT_SEGMENT_KEY, STREAM_KEY, estimate
from .loader import TargetError, builtin_names, config_dir, list_targets, load_target, target_from_dict
from .model import NodeCost, node_cost
from .roofline import Roofline, RooflinePoint, plot_roofline, roofline
from .rules import COST_RULES, CostError, Operand, Work, node_work
from .systolic import SystolicResult, systolic_cycles
from .table import EMULATED_LABEL, CostTable, CostTotals
from .target import PRECISIONS, Fallback, MatrixUnit, MemoryLevel, SparsitySupport, Target

__all__ = [
    "COST_RULES", "DEFAULT_MAC_PJ", "DEFAULT_OP_PJ", "EMULATED_LABEL", "EXIT_PROBABILITY_KEY", "EXIT_SEGMENT_KEY",
    "HOROWITZ_OP_PJ", "PRECISIONS", "STREAM_KEY", "CostError", "CostTable", "CostTotals", "Decision", "Fallback",
    "MatrixUnit", "MemoryLevel", "NodeCost", "Operand", "Roofline", "RooflinePoint", "SparsitySupport",
    "SystolicResult", "Target", "TargetError", "Work", "builtin_names", "choose_precision", "choose_sparsity",
    "config_dir", "estimate", "list_targets", "load_target", "node_cost", "node_work", "plot_roofline", "roofline",
    "systolic_cycles", "target_from_dict",
]
