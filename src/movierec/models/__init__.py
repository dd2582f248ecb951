"""The models: one contract, the machinery every model shares, and the families that implement it.

    core/       the contract (`Recommender`: fit, predict, recommend, fold-in, similar, explain) and
                what all models share: top-k, re-ranking, filters, explanations, checks, implicit
                feedback, the minibatch trainer
    rating/     predicting the stars someone would give: bias, biased MF (SGD, ALS), SVD++,
                Bayesian MF, item kNN on baselines
    ranking/    which movies someone will watch: popularity, item kNN, EASE, GF-CF, iALS, BPR, Mult-VAE
    classic/    the classic MovieLens network designs: the Keras dot product with biases, the embedding
                MLPs, the rating-class softmax, the course's mean-normalised MF
    combine/    models built on other models or on movie content: content, hybrid, blend, ltr
    registry    every model by name, and where it lives

Make a model by name with `create_model` (`MODELS` lists the names); save and load it with
`movierec.artifacts`.
"""

from movierec.models.core.recommender import Callback, Picks, Recommender
from movierec.models.registry import MODELS, create_model, get_model_class, parse_params

__all__ = ["MODELS", "Callback", "Picks", "Recommender", "create_model", "get_model_class", "parse_params"]
