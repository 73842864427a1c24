"""zipml-fpga: ZipML low-precision SGD on open FPGAs.

The import package ``zipml`` is the repository root; its subpackages are the
folders of the data path: ``reference`` (maths, golden model) -> ``hw``
(gateware) -> ``sim`` (Verilator harness) -> ``host`` (driver, CLI).
"""

__version__ = "0.1.0"

__all__ = ["ZipMLRegressor", "ZipMLClassifier", "__version__"]


def __getattr__(name):
    # lazy: `import zipml` stays cheap (no scikit-learn, no amaranth) until an estimator is used
    if name in ("ZipMLRegressor", "ZipMLClassifier"):
        from .host import estimators
        return getattr(estimators, name)
    raise AttributeError(f"module 'zipml' has no attribute {name!r}")
