"""Model compression: quantization, reduced-precision storage, pruning, decomposition.

  quantize_graph(graph, calibration, mode="int8"|"int8-weights"|"dynamic"|"int4-weights[:g128]",
                 ...) -> Graph
  quantize(...) -> QuantResult (the graph, its layers, those kept in float, the drift)
  load_calibration(source, input_types) -> list of feeds
  compression_report(float_graph, [(name, graph), ...], feeds) -> Report (table, JSON)

See docs/COMPRESSION.md.
"""
from .calibrate import load_calibration
from .quantize import MODES, QuantResult, find_layers, quantize, quantize_graph
from .report import Report, Stage, compression_report

__all__ = ["MODES", "QuantResult", "Report", "Stage", "compression_report", "find_layers",
           "load_calibration", "quantize", "quantize_graph"]
