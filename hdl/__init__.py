"""HDL: Hierarchical Dynamic Labeling for semi-supervised learning.

Data flow: features -> bank -> kNN graph -> levels and votes -> labeled pool -> (semantic) targets -> loss.

The core package (everything outside ``hdl.algorithms``) is plain torch/numpy/faiss and never
imports ``semilearn``.  ``import hdl.algorithms`` loads the USB adapters and registers the
``hdl_*`` algorithms in USB's registry.
"""

__version__ = "0.2.0"
