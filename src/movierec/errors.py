"""The exceptions movierec raises on purpose.

Every error a user can cause (bad input, a corrupt archive, an unknown id) is a `MovieRecError`, so the
CLI and the service can turn it into a one-line message; anything else is a bug.
"""


class MovieRecError(Exception):
    """Base class of every error movierec raises deliberately."""


class DataError(MovieRecError, ValueError):
    """Input data is malformed, inconsistent or missing (a ratings file, an archive member, a split)."""


class ChecksumError(DataError):
    """A downloaded or mirrored archive does not match any checksum pinned for it."""


class IntegrityError(DataError):
    """A saved artifact (a model folder) does not hold what its manifest says, or what a model of its
    kind must hold: a truncated, altered, swapped or forged file. Nothing of it is used."""


class UnknownIdError(MovieRecError, KeyError):
    """A raw user or movie id is not known to the vocabulary, catalog or model asked."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain sentence
        return str(self.args[0]) if self.args else ""


class NotFittedError(MovieRecError, RuntimeError):
    """A model was used before `fit` (or `load`) gave it learned state."""


class ConfigError(MovieRecError, ValueError):
    """A hyperparameter, option or setting has an invalid value."""


class MemoryLimitError(MovieRecError):
    """A fit would need more memory than allowed (``max_memory``, by default what the machine has);
    raised before anything large is allocated."""
