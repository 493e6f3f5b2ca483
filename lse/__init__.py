"""lse: Large-Scale Evolution of Image Classifiers (Real et al., ICML 2017).

The public API for notebooks and other tools is re-exported here once each module exists.
"""

__version__ = "0.1.0"
