"""Rating prediction: models of the stars someone would give (``predicts_ratings = True``).

    bias           ``bias``: global mean + regularised user and movie biases
    mf             biased MF: what its trainers share, and ``biased-mf-sgd`` (minibatch SGD)
    als            ``biased-mf-als``: biased MF by batched closed-form ALS
    svdpp          ``svdpp``: Koren's SVD++
    bayesian       ``bayesian-mf``: Bayesian MF by Gibbs sampling
    knn_baseline   ``item-knn-baseline``: item kNN on baseline residuals (Surprise's KNNBaseline)
"""
