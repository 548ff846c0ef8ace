"""crossalign: align paired data of any modalities into one shared space.

The library (modalities, encoders, data, align, evaluate, index) imports without the
trainer, CLI or server. Heavy submodules are imported lazily by the functions that need them.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
