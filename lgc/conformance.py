"""ONNX conformance at its old path (`python3 -m lgc.conformance`); it lives in
lgc.tools.conformance."""
import sys

from .tools.conformance import (CATEGORIES, EXPECTED_FILE, Case, collect, load_case, main,
                                node_case, read_expected, run_all, run_case, summarize,
                                write_expected)

__all__ = ["CATEGORIES", "EXPECTED_FILE", "Case", "collect", "load_case", "main", "node_case",
           "read_expected", "run_all", "run_case", "summarize", "write_expected"]

if __name__ == "__main__":
    sys.exit(main())
