"""The MovieLens variants movierec knows: where each lives, how big it is, how to check and parse it.

Checksums come from GroupLens' published values (see BENCHMARKS.md). An archive is accepted when its
SHA-256 is the official one, or when its key members (ratings and movies files) match pinned SHA-256
values: a genuine repack. Variants GroupLens only publishes an ``.md5`` for are checked against that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from movierec.errors import ConfigError

__all__ = ["BASE_URL", "VARIANTS", "Variant", "get_variant"]

BASE_URL = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class Variant:
    """One MovieLens release.

    Attributes:
        name: registry name, also the archive's stem (``ml-100k`` -> ``ml-100k.zip``).
        folder: the top folder inside the archive.
        layout: ``"100k"`` (tab/pipe files), ``"dat"`` (``::``-separated) or ``"csv"``.
        members: role -> member file name inside ``folder`` (ratings, movies, users, tags, links).
        size: archive bytes as GroupLens serves it, or None when not pinned.
        sha256: the official archive's SHA-256, or None.
        member_sha256: member file name -> SHA-256 of genuine content, for repacked archives.
        md5_published: GroupLens serves ``<archive>.md5`` beside the zip.
        scale: the rating scale.
        ratings, users, movies: approximate counts, for `movierec data list`.
        description: one line for humans.
    """

    name: str
    folder: str
    layout: str
    members: dict[str, str]
    size: int | None
    sha256: str | None
    scale: tuple[float, float]
    ratings: int
    users: int
    movies: int
    description: str
    member_sha256: dict[str, str] = field(default_factory=dict)
    md5_published: bool = False

    @property
    def filename(self) -> str:
        return f"{self.name}.zip"

    @property
    def url(self) -> str:
        return BASE_URL + self.filename

    @property
    def has_folds(self) -> bool:
        """Whether the archive ships canonical train/test folds (ml-100k's u1..u5, ua, ub)."""
        return self.layout == "100k"


_CSV_MEMBERS = {
    "ratings": "ratings.csv",
    "movies": "movies.csv",
    "tags": "tags.csv",
    "links": "links.csv",
}

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant(
            name="ml-100k",
            folder="ml-100k",
            layout="100k",
            members={"ratings": "u.data", "movies": "u.item", "users": "u.user"},
            size=4_924_029,
            sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            member_sha256={
                "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
                "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
                "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
            },
            scale=(1.0, 5.0),
            ratings=100_000,
            users=943,
            movies=1_682,
            description="1998 classic: 100k ratings 1-5, demographics, canonical folds u1..u5/ua/ub",
        ),
        Variant(
            name="ml-1m",
            folder="ml-1m",
            layout="dat",
            members={"ratings": "ratings.dat", "movies": "movies.dat", "users": "users.dat"},
            size=5_917_549,
            sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            scale=(1.0, 5.0),
            ratings=1_000_209,
            users=6_040,
            movies=3_883,
            description="2003: 1M ratings 1-5 from 6,040 users, with demographics",
        ),
        Variant(
            name="ml-10m",
            folder="ml-10M100K",
            layout="dat",
            members={"ratings": "ratings.dat", "movies": "movies.dat", "tags": "tags.dat"},
            size=None,
            sha256=None,
            md5_published=True,
            scale=(0.5, 5.0),
            ratings=10_000_054,
            users=69_878,
            movies=10_681,
            description="2009: 10M half-star ratings and 100k tags",
        ),
        Variant(
            name="ml-20m",
            folder="ml-20m",
            layout="csv",
            members=dict(_CSV_MEMBERS),
            size=198_702_078,
            sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
            scale=(0.5, 5.0),
            ratings=20_000_263,
            users=138_493,
            movies=27_278,
            description="2015 benchmark: 20M ratings, tags, links",
        ),
        Variant(
            name="ml-25m",
            folder="ml-25m",
            layout="csv",
            members=dict(_CSV_MEMBERS),
            size=261_978_986,
            sha256="8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
            scale=(0.5, 5.0),
            ratings=25_000_095,
            users=162_541,
            movies=62_423,
            description="2019 benchmark: 25M ratings, tags, links",
        ),
        Variant(
            name="ml-32m",
            folder="ml-32m",
            layout="csv",
            members=dict(_CSV_MEMBERS),
            size=None,
            sha256=None,
            md5_published=True,
            scale=(0.5, 5.0),
            ratings=32_000_204,
            users=200_948,
            movies=87_585,
            description="2024 benchmark: 32M ratings, tags, links",
        ),
        Variant(
            name="ml-latest-small",
            folder="ml-latest-small",
            layout="csv",
            members=dict(_CSV_MEMBERS),
            size=978_202,
            sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
            member_sha256={
                "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
                "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
            },
            scale=(0.5, 5.0),
            ratings=100_836,
            users=610,
            movies=9_742,
            description="2018 education set: 100k half-star ratings, tags, links (small, fast)",
        ),
        Variant(
            name="ml-latest",
            folder="ml-latest",
            layout="csv",
            members=dict(_CSV_MEMBERS),
            size=None,
            sha256=None,
            md5_published=True,
            scale=(0.5, 5.0),
            ratings=33_832_162,
            users=330_975,
            movies=86_537,
            description="the current full release (changes over time; not for benchmarks)",
        ),
    ]
}


def get_variant(name: str) -> Variant:
    """The variant called ``name``.

    Raises:
        ConfigError: if no variant has that name.
    """
    try:
        return VARIANTS[name]
    except KeyError:
        known = ", ".join(VARIANTS)
        raise ConfigError(f"unknown dataset {name!r}; expected one of {known}") from None
