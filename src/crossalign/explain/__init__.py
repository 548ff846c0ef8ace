"""Why do two items match? Attribution of a shared-space similarity to words, image cells, audio windows
and sensor cells (Captum: integrated gradients where the tower is differentiable, occlusion everywhere).

    from crossalign.align.embedder import Embedder
    from crossalign.explain import explain_pair
    emb = Embedder.from_run("runs/demo/run")
    ex = explain_pair(emb, ("text", "a large red circle at the top left"), ("image", pil_image))
    ex.score, ex.sides[0].top(3), ex.to_dict()
"""

from crossalign.explain.core import PairExplanation, SideExplanation, explain_pair, explain_side, side_units
from crossalign.explain.methods import METHODS, default_method, ig_support

__all__ = [
    "explain_pair",
    "explain_side",
    "side_units",
    "PairExplanation",
    "SideExplanation",
    "METHODS",
    "default_method",
    "ig_support",
]
