"""The classic MovieLens network designs: five presets, each a `Recommender`.

============================  ===========================================  ==============================
name                          network                                      loss, training
============================  ===========================================  ==============================
``embedding-mlp``             [user emb | movie emb] -> ReLU layers        MSE, minibatch Adam
                              (dropout) -> one linear output (ml-100k)
``dot-bias-sigmoid``          sigmoid(p_u . q_i + b_u + b_i), scaled to    BCE on min-max scaled ratings,
                              the rating range (the Keras example)         Adam lr 1e-3, batch 64, 5 epochs
``rating-classifier``         [user emb | movie emb] -> ReLU layers ->     cross-entropy over the rating
                              softmax over the rating levels               levels; prediction = E[rating]
``mean-normalized-mf``        mu_i + x_i . w_u + b_u + b_i (the ML         squared error + L2, full-batch
                              course's mean-normalised CF)                 Adam through autograd
``embedding-regressor``       like embedding-mlp, smaller, early stopping  MSE, Adam, validation carved
                              on a (random or latest-in-time) carve-out    from train when none is given
============================  ===========================================  ==============================

    dot_bias_sigmoid     ``dot-bias-sigmoid``
    embedding_mlp        ``embedding-mlp``, ``embedding-regressor``
    rating_classifier    ``rating-classifier``
    mean_normalized_mf   ``mean-normalized-mf``
    tower                the embedding tower three presets share
    shared               conventions and plumbing shared by all five (lazy Adam, fold-in, checks)
"""
