"""The contract every model implements, and the machinery they share (no model lives here).

    recommender   `Recommender`: fit, predict, recommend, fold-in, similar movies, explanations
    topk          exact top-k selection with deterministic ties
    rerank        maximal marginal relevance (diversity) over a top-k pool
    filters       genre, release-year and popularity filters
    explain       from contributions to "because you rated ..." lists
    checks        hyperparameter checks with clear errors
    interactions  ratings as implicit feedback (min_rating, weighting, sessions)
    train         the minibatch trainer and torch plumbing (devices, threads, arrays)
"""
