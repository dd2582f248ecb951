"""Ranking: models of which movies someone will watch (``predicts_ratings = False``; scores rank).

    popularity   ``popularity``: most rated
    item_knn     ``item-knn``: item kNN on implicit feedback (cosine, BM25)
    item_item    what EASE and GF-CF share: one dense item-item matrix
    ease         ``ease``: EASE closed form, EDLAE dropout, rating sessions
    gfcf         ``gf-cf``: graph-filter collaborative filtering
    factors      what iALS and BPR share: user and item vectors, item biases
    ials         ``ials``: implicit ALS with batched conjugate gradient
    bpr          ``bpr``: Bayesian personalised ranking
    mult_vae     ``mult-vae``: variational autoencoder with a multinomial likelihood
"""
