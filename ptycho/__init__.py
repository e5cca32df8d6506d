"""Physics-informed ptychography (PtychoPINN-style) on TensorFlow 2 / Keras 3.

Importing this package builds nothing: no model, no tf.Variable, no device setup.
Submodules are imported explicitly (``from ptycho import model``).
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
