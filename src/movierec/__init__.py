"""movierec: collaborative-filtering movie recommendations on MovieLens or your own ratings.

The public entry points are re-exported here; every name below is documented in its own module.
"""

from movierec.errors import (
    ChecksumError,
    ConfigError,
    DataError,
    MovieRecError,
    NotFittedError,
    UnknownIdError,
)

__version__ = "0.1.0"

__all__ = [
    "ChecksumError",
    "ConfigError",
    "DataError",
    "MovieRecError",
    "NotFittedError",
    "UnknownIdError",
    "__version__",
]
