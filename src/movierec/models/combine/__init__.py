"""Combiners: models built on other models, or on the movies' content.

    content   ``content``: TF-IDF over genres, tags and decades (new movies, sparse users)
    hybrid    ``hybrid``: a collaborative model + content, blended by how much is known
    blend     ``blend``: weighted per-user z-scores of several ranking models
    ltr       ``ltr``: the blend re-weighted by a listwise-learned linear model
    rows      per-user score rows: z-scores, unit-L1 rows, pair predictions from whole rows
"""
