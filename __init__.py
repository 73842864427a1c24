"""zipml-fpga: ZipML low-precision SGD on open FPGAs.

The import package ``zipml`` is the repository root; its subpackages are the
folders of the data path: ``reference`` (maths, golden model) -> ``hw``
(gateware) -> ``sim`` (Verilator harness) -> ``host`` (driver, CLI).
"""

__version__ = "0.1.0"
