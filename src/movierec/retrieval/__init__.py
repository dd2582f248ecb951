"""Approximate top-k for large catalogs: a faiss inner-product index over the models whose scores are
inner products (`movierec.models.core.recommender.DotParts`), attached to a model from above
(`attach`), so the models stay unaware of it. See docs/retrieval.md.
"""

from movierec.retrieval.index import AnnIndex, faiss_gpus, fingerprint, load_faiss
from movierec.retrieval.retriever import (
    ANN_MIN_ITEMS,
    ANN_MODES,
    EXACT_SHARE,
    AnnRetriever,
    attach,
    describe,
)

__all__ = ["ANN_MIN_ITEMS", "ANN_MODES", "EXACT_SHARE", "AnnIndex", "AnnRetriever", "attach", "describe",
           "faiss_gpus", "fingerprint", "load_faiss"]
