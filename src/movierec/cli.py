"""The `movierec` command: thin commands over the library (the only place that prints or exits).

Exit codes: 0 ok; 2 bad input (one line on stderr, no traceback); 1 unexpected failure.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from movierec import __version__
from movierec._files import atomic_file
from movierec.errors import ConfigError, MovieRecError

app = typer.Typer(
    name="movierec",
    help="Movie recommendations from MovieLens or your own ratings: fetch data, train, evaluate, "
    "recommend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="List, fetch, inspect and synthesise datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

# -- shared options ----------------------------------------------------------------------------
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]
MirrorOpt = Annotated[
    str | None,
    typer.Option(
        "--mirror",
        help="Folder or URL holding MovieLens archives under their official names "
        "(default: $MOVIEREC_MIRROR, then GroupLens).",
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Cache folder (default: $MOVIEREC_DATA or the user cache)."),
]
NameArg = Annotated[
    str,
    typer.Argument(
        help="A dataset name (see `movierec data list`) or the path of your own ratings file "
        "(CSV/TSV/Parquet with user, item, rating[, timestamp]).",
        show_default=False,
    ),
]
MoviesOpt = Annotated[
    Path | None,
    typer.Option("--movies", help="For your own ratings file: a movies.csv-style file "
                 "(movieId,title,genres)."),
]
ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Model name (see `movierec models`)."),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Hyperparameter as name=value; repeat for several."),
]
KOpt = Annotated[int, typer.Option("--k", "-k", help="Length of recommendation lists.", min=1)]
PlotOpt = Annotated[Path | None, typer.Option("--plot", help="Write a figure to this .png file.")]
MaxMemoryOpt = Annotated[
    str | None,
    typer.Option("--max-memory", help="Memory a fit may take, e.g. 4GB or 512MB: a model whose "
                 "estimate is larger is refused before it starts (default: what the machine has "
                 "available)."),
]


def _max_memory(text: str | None) -> int | None:
    """``--max-memory`` in bytes (None: the machine's available memory, decided at each fit)."""
    if text is None:
        return None
    from movierec.models.core.memory import parse_memory

    try:
        return parse_memory(text)
    except ConfigError as exc:
        raise ConfigError(f"--max-memory: {exc}") from None


def _check_png(path: Path | None) -> None:
    """Refuse a plot path up front, before minutes of training are spent."""
    if path is not None and path.suffix.lower() != ".png":
        raise ConfigError(f"--plot must name a .png file, got {path}")


def _handle_errors(command: F) -> F:
    """Turn expected errors into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MovieRecError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is pd.NA:
        return None
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


@contextmanager
def _progress(enabled: bool = True) -> Iterator[Callable[[str, int, int | None], None]]:
    """A rich progress display for byte transfers, as a `movierec.data.download.Progress`."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not enabled,
    )
    tasks: dict[str, TaskID] = {}

    def report(description: str, done: int, total: int | None) -> None:
        if description not in tasks:
            tasks[description] = progress.add_task(description, total=total)
        progress.update(tasks[description], completed=done, total=total)

    with progress:
        yield report


def _load(name: str, mirror: str | None, data_dir: Path | None, movies: Path | None,
          quiet: bool) -> Any:
    from movierec.data.download import load_dataset

    with _progress(not quiet) as report:
        return load_dataset(name, mirror=mirror, data_dir=data_dir, movies=movies,
                            progress=report)


def _genres(value: Any) -> str:
    return "|".join(value) if isinstance(value, list | tuple | np.ndarray) and len(value) else "-"


def _year(value: Any) -> str:
    return "" if value is None or value is pd.NA or pd.isna(value) else str(int(value))


# -- top level ---------------------------------------------------------------------------------
def _version(value: bool) -> None:
    if value:
        out.print(f"movierec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more detail.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="CPU threads for model maths (default: torch's choice; "
                     "1 is often fastest for small data or on a busy machine)."),
    ] = None,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@app.command("models")
@_handle_errors
def models_command(as_json: JsonOpt = False) -> None:
    """List the available models and their hyperparameters."""
    from movierec.models.registry import MODELS

    rows = [
        {"name": name, "predicts_ratings": cls.predicts_ratings,
         "params": cls.default_params(), "summary": (cls.__doc__ or "").strip().splitlines()[0]}
        for name, cls in sorted(MODELS.items())
    ]
    if as_json:
        _print_json(rows)
        return
    table = Table("model", "hyperparameters (defaults)", "what it is")
    for row in rows:
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        table.add_row(row["name"], params, row["summary"])
    out.print(table)


# -- data --------------------------------------------------------------------------------------
@data_app.command("list")
@_handle_errors
def data_list(data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """List the MovieLens datasets movierec knows, and which are cached."""
    from movierec.data.download import is_cached
    from movierec.data.registry import VARIANTS

    rows = [
        {"name": v.name, "ratings": v.ratings, "users": v.users, "movies": v.movies,
         "scale": list(v.scale), "archive_bytes": v.size, "cached": is_cached(v.name, data_dir),
         "description": v.description}
        for v in VARIANTS.values()
    ]
    if as_json:
        _print_json(rows)
        return
    table = Table("name", "ratings", "users", "movies", "scale", "size", "cached", "description")
    for r in rows:
        size = f"{r['archive_bytes'] / 1e6:.1f} MB" if r["archive_bytes"] else "?"
        table.add_row(r["name"], f"{r['ratings']:,}", f"{r['users']:,}", f"{r['movies']:,}",
                      f"{r['scale'][0]:g}-{r['scale'][1]:g}", size, "yes" if r["cached"] else "",
                      r["description"])
    out.print(table)


@data_app.command("fetch")
@_handle_errors
def data_fetch(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. ml-latest-small.")],
    mirror: MirrorOpt = None,
    data_dir: DataDirOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Download and rebuild the cache.")] = False,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Accept the archive without checksum checks.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Download (or copy from a mirror), verify and cache a MovieLens dataset."""
    from movierec.data.download import data_home, fetch_archive, load_dataset

    start = time.perf_counter()
    with _progress(not as_json) as report:
        archive = fetch_archive(name, mirror=mirror, data_dir=data_dir, force=force,
                                verify=not no_verify, progress=report)
        dataset = load_dataset(name, data_dir=data_dir, refresh=force, progress=report)
    payload = {
        "name": name,
        "archive": str(archive),
        "cache": str(data_home(data_dir) / name),
        "seconds": round(time.perf_counter() - start, 3),
        **dataset.ratings.describe(),
    }
    if as_json:
        _print_json(payload)
        return
    out.print(
        f"[green]✓[/] {name}: {len(dataset.ratings):,} ratings, {dataset.ratings.n_users:,} users, "
        f"{len(dataset.catalog):,} movies, cached in {payload['cache']} "
        f"({payload['seconds']:.1f} s)"
    )


@data_app.command("info")
@_handle_errors
def data_info(
    name: NameArg,
    mirror: MirrorOpt = None,
    data_dir: DataDirOpt = None,
    movies: MoviesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Describe a dataset: counts, density, rating scale and distribution, time span, genres."""
    dataset = _load(name, mirror, data_dir, movies, as_json)
    info = dataset.ratings.describe()
    info["name"] = dataset.name
    info["catalog_movies"] = len(dataset.catalog)
    info["genres"] = dataset.catalog.genres
    info["demographics"] = dataset.users is not None
    info["canonical_folds"] = list(dataset.folds)
    info["fingerprint"] = dataset.ratings.fingerprint()
    if as_json:
        _print_json(info)
        return
    table = Table(show_header=False, title=f"[bold]{dataset.name}")
    for key, value in info.items():
        if key == "genres":
            value = ", ".join(value)
        elif key == "rating_counts":
            value = "  ".join(f"{k}:{v:,}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        table.add_row(key, str(value))
    out.print(table)


@data_app.command("synth")
@_handle_errors
def data_synth(
    users: Annotated[int, typer.Option("--users", help="Number of users.", min=1)],
    items: Annotated[int, typer.Option("--items", help="Number of movies.", min=1)],
    ratings: Annotated[int, typer.Option("--ratings", help="Number of ratings.", min=1)],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")],
    scale: Annotated[
        str | None,
        typer.Option("--scale", help="0.5-5 (half stars) or 1-5 (default: the --layout dataset's "
                     "scale, else 0.5-5)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    layout: Annotated[
        str | None,
        typer.Option(
            "--layout",
            help="Also write a zip in the official layout of this dataset name "
            "(ml-100k, ml-1m, ml-10m, ml-latest-small, ...).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate MovieLens-shaped synthetic data (ratings.parquet + movies.csv, optionally a zip).

    The shape: movie popularity is Zipf-like, weight (rank + 30)^-1.4 (a long tail: the top 10%
    of movies take about half the ratings); users get at least min(20, ratings/users) ratings
    each, the rest in proportion to a lognormal(0, 1.2) activity, at most half the movies; each
    user mixes mainstream picks with three favourite genres; ratings follow ml-latest-small's
    histogram (mean about 3.5, 4 the most common; ml-100k's with --scale 1-5); timestamps span
    1996-2023. The same --seed gives the same files.

    Generated in blocks of about 2 million ratings, so memory stays near the final columns
    (about 20 bytes a rating): the ml-32m stand-in, --users 200000 --items 87000 --ratings
    32000000, takes about 1 GB and well under a minute.
    """
    from movierec.data.archives import write_archive
    from movierec.data.registry import get_variant
    from movierec.data.synth import synthesize

    # Check everything before generating, so a bad request writes nothing.
    whole = layout is not None and get_variant(layout).scale == (1.0, 5.0)
    if scale is None:
        scale = "1-5" if whole else "0.5-5"
    if scale not in ("0.5-5", "1-5"):
        raise ConfigError(f"--scale must be 0.5-5 or 1-5, got {scale!r}")
    if whole and scale != "1-5":
        raise ConfigError(f"--layout {layout} takes whole stars from 1 to 5; use --scale 1-5")
    start = time.perf_counter()
    with err.status("synthesising ...", spinner="dots") if not as_json else _nullcontext():
        dataset = synthesize(users, items, ratings, scale=scale, seed=seed)
    generated = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    written = _write_own_files(dataset, out_dir)
    if layout is not None:
        written.append(write_archive(dataset, out_dir / f"{layout}.zip", layout))
    payload = {"ratings": len(dataset.ratings), "users": dataset.ratings.n_users,
               "movies": len(dataset.catalog), "seconds": round(generated, 3),
               "files": [str(p) for p in written]}
    if as_json:
        _print_json(payload)
        return
    out.print(f"[green]✓[/] {payload['ratings']:,} ratings from {payload['users']:,} users on "
              f"{payload['movies']:,} movies in {generated:.1f} s")
    for path in written:
        out.print(f"  {path}")


def _write_ratings_parquet(ratings: Any, path: Path, chunk: int = 1 << 22) -> None:
    """userId, movieId (raw ids), rating[, timestamp] as Parquet, one row group per ``chunk`` rows:
    a whole frame of raw ids would double the memory of a 32M-rating set."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    users, items = ratings.users.ids, ratings.items.ids
    writer = None
    try:
        for lo in range(0, len(ratings), chunk):
            hi = min(lo + chunk, len(ratings))
            columns = {"userId": np.take(users, ratings.user_index[lo:hi]),
                       "movieId": np.take(items, ratings.item_index[lo:hi]),
                       "rating": ratings.rating[lo:hi]}
            if ratings.timestamp is not None:
                columns["timestamp"] = ratings.timestamp[lo:hi]
            table = pa.table(columns)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


@contextmanager
def _nullcontext() -> Iterator[None]:
    yield


def _write_own_files(dataset: Any, folder: Path) -> list[Path]:
    """ratings.parquet + movies.csv: the form `movierec train FILE --movies FILE` reads."""
    ratings_path = folder / "ratings.parquet"
    movies_path = folder / "movies.csv"
    with atomic_file(ratings_path) as temp:
        _write_ratings_parquet(dataset.ratings, temp)
    catalog = dataset.catalog.frame
    titles = [f"{t} ({int(y)})" if not pd.isna(y) else t
              for t, y in zip(catalog["title"], catalog["year"], strict=True)]
    movies = pd.DataFrame({"movieId": catalog["item"], "title": titles,
                           "genres": [_genres(g) if len(g) else "(no genres listed)"
                                      for g in catalog["genres"]]})
    with atomic_file(movies_path) as temp:
        movies.to_csv(temp, index=False)
    return [ratings_path, movies_path]


# -- train / evaluate --------------------------------------------------------------------------
SplitOpt = Annotated[
    str,
    typer.Option(
        "--split",
        "-s",
        help="u1..u5, ua, ub (ml-100k folds), random:FRAC:SEED, user-ratio:FRAC:SEED, "
        "temporal:FRAC, leave-last:N, kfold:K:FOLD:SEED; `none` trains on everything.",
    ),
]


DistributedOpt = Annotated[
    bool,
    typer.Option("--distributed", help="Train across the processes of a torchrun launch (gloo on CPUs, "
                 "NCCL on GPUs): torchrun --nproc-per-node N -m movierec ... --distributed. Rank 0 "
                 "evaluates and writes the model (see docs/distributed.md)."),
]
DistTimeoutOpt = Annotated[
    float,
    typer.Option("--dist-timeout", min=1.0, help="With --distributed: seconds to wait for the other "
                 "processes, at the rendezvous and at every exchange."),
]


def _join(distributed: bool, timeout: float, model_name: str) -> Any:
    """With --distributed, this process's `movierec.distributed.Group` (left at exit); else None."""
    if not distributed:
        return None
    import atexit

    from movierec.distributed import check_covered, join_group, leave_group

    check_covered(model_name)  # refuse before waiting for anyone
    with _native_stderr_muted(not logging.getLogger().isEnabledFor(logging.INFO)):
        group = join_group(timeout)
    atexit.register(leave_group)
    return group


@contextmanager
def _native_stderr_muted(mute: bool) -> Iterator[None]:
    """Hide what torch's C++ layer writes straight to file descriptor 2 while it waits at the
    rendezvous (every retry, with a stack dump): a failure becomes one line of ours instead;
    --verbose shows it all."""
    if not mute:
        yield
        return
    import os

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _sharded(group: Any, model_name: str) -> bool:
    """Whether this run trains a model whose ratings are sharded by user and by movie (iALS, ALS)."""
    if group is None:
        return False
    from movierec.distributed.run import SHARDED

    return model_name in SHARDED


@dataclass
class _Loaded:
    """What rank 0 keeps of a dataset once a sharded model's ratings are shared out."""

    name: str
    catalog: Any


def _prepare(group: Any, model: Any, name: str, split: str, k: int, quiet: bool, mirror: str | None,
             data_dir: Path | None, movies: Path | None, *, whole_ok: bool = False
             ) -> tuple[Any, Any, Any, Any]:
    """(dataset, split, training ratings, this rank's shards or None) for train and evaluate, loaded
    and split; in a distributed run through `_load_sharded`. ``whole_ok``: split ``none`` trains on
    all the ratings (no split)."""
    from movierec.data.split import make_split

    if group is not None:
        return _load_sharded(group, model, name, split, k, quiet, mirror, data_dir, movies)
    dataset = _load(name, mirror, data_dir, movies, quiet)
    if whole_ok and split.strip().lower() == "none":
        train, split_obj = dataset.ratings, None
    else:
        split_obj = make_split(dataset, split)
        train = split_obj.train
    return dataset, split_obj, train, None


def _load_sharded(group: Any, model: Any, name: str, split: str, k: int, quiet: bool,
                  *where: Any) -> tuple[Any, Any, Any, Any]:
    """The data of a distributed run: every rank is checked to run the same job; rank 0 alone loads
    and splits (as one process does) and shares the training data out (iALS and ALS:
    `movierec.distributed.sharded.share_training_data`; the others: the ratings of a block of users
    each, `movierec.distributed.data_parallel.share_ratings`), then drops its ratings, keeping the
    test rows, the catalog, a `TrainSummary` in place of the training part and the ratings matrix
    as a memory map.

    Returns (dataset name and catalog, the split with the summary as its train part or None, the
    summary, (this rank's shards, rank 0's memory-mapped ratings matrix)); the first three are None
    on the other ranks, which never read the data.
    """
    from typing import cast

    from movierec.data.split import Split, make_split
    from movierec.distributed import same_everywhere
    from movierec.distributed.data_parallel import share_ratings
    from movierec.distributed.sharded import (
        TrainSummary,
        give_back_memory,
        mapped_copy,
        share_training_data,
    )

    same_everywhere(group, "command", (model.name, model.get_params(), name, split, k))
    sharded = _sharded(group, model.name)
    if not group.is_main:
        if sharded:
            return None, None, None, share_training_data(group, model, None)
        return None, None, None, (share_ratings(group, None), None)
    dataset = _load(name, *where, quiet)
    if split.strip().lower() == "none":
        train, test, recipe = dataset.ratings, None, "none"
    else:
        parts = make_split(dataset, split)
        train, test, recipe = parts.train, parts.test, parts.recipe
        del parts
    summary = TrainSummary.of(train)
    if sharded:
        shards = share_training_data(group, model, train)
    else:
        shards = (share_ratings(group, train), mapped_copy(train.csr))
    loaded = _Loaded(dataset.name, dataset.catalog)
    del dataset, train  # the whole ratings: each rank now holds its shards
    give_back_memory()
    split_obj = None if test is None else Split(cast(Any, summary), test, recipe)
    return loaded, split_obj, summary, shards


def _fit(model: Any, train: Any, quiet: bool, valid: Any = None, catalog: Any = None,
         max_memory: int | None = None, group: Any = None, shards: Any = None
         ) -> tuple[float, list[dict[str, Any]]]:
    """Fit with an epoch progress bar; return (seconds, history).

    ``valid`` is shown to the model for per-epoch validation figures (learning curves); models
    that stop early on it say so in their docs, and `evaluate`/`compare` never pass it.
    """
    history: list[dict[str, Any]] = []
    progress = Progress(TextColumn("training {task.fields[name]}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                        TimeRemainingColumn(), console=err, transient=True,
                        disable=quiet)
    with progress:
        task = progress.add_task("fit", total=None, name=model.name, note="")

        def callback(event: str, info: dict[str, Any]) -> None:
            if event == "epoch":
                history.append(dict(info))
                note = "  ".join(f"{k} {v:.4f}" for k, v in info.items()
                                 if isinstance(v, float))
                progress.update(task, completed=info.get("epoch"), total=info.get("epochs"),
                                note=note)

        start = time.perf_counter()
        if group is None:
            model.fit(train, valid=valid, callback=callback, catalog=catalog, max_memory=max_memory)
        elif _sharded(group, model.name):  # rank 0's train: the `TrainSummary` of what was shared
            from movierec.distributed.sharded import fit_sharded

            main = group.is_main
            fit_sharded(model, shards[0], group, summary=train if main else None, seen=shards[1],
                        valid=valid, callback=callback if main else None, catalog=catalog)
        else:
            from movierec.distributed.run import fit_data_parallel

            fit_data_parallel(model, shards[0], group, seen=shards[1], valid=valid, callback=callback,
                              catalog=catalog)
    return time.perf_counter() - start, history


def _serve_evaluation(group: Any, model: Any) -> None:
    """A rank > 0 after training a sharded model: rank its users for rank 0's evaluation."""
    if _sharded(group, model.name):
        from movierec.distributed.sharded import serve_ranking

        serve_ranking(group, model)


@contextmanager
def _evaluation_across(group: Any, model: Any) -> Iterator[Any]:
    """Rank 0's ranker for `evaluate` (None: the model's own): with a sharded model every rank ranks
    its block of users; the other ranks are let go when the block ends, however it ends."""
    if not _sharded(group, model.name):
        yield None
        return
    from movierec.distributed.sharded import rank_across, stop_serving

    try:
        yield rank_across(group, model)
    finally:
        stop_serving(group)


def _metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table("metric", "value", title=title)
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    return table


@app.command("train")
@_handle_errors
def train_command(
    name: NameArg,
    model_name: ModelOpt = "bias",
    split: SplitOpt = "random:0.9:42",
    param: ParamOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Artifact folder (default: runs/<dataset>-<model>)."),
    ] = None,
    k: KOpt = 10,
    mirror: MirrorOpt = None,
    data_dir: DataDirOpt = None,
    movies: MoviesOpt = None,
    plot: PlotOpt = None,
    max_memory: MaxMemoryOpt = None,
    distributed: DistributedOpt = False,
    dist_timeout: DistTimeoutOpt = 600.0,
    as_json: JsonOpt = False,
) -> None:
    """Train a model, evaluate it on the held-out split, and save it as an artifact folder."""
    from movierec.artifacts import save_model
    from movierec.eval.protocol import evaluate
    from movierec.models.registry import create_model, parse_params

    model = create_model(model_name, **parse_params(model_name, param or []))
    _check_png(plot)
    limit = _max_memory(max_memory)
    group = _join(distributed, dist_timeout, model_name)
    helper = group is not None and not group.is_main  # a rank > 0: trains its shard, says nothing
    dataset, split_obj, train, shards = _prepare(group, model, name, split, k, as_json or helper,
                                                 mirror, data_dir, movies, whole_ok=True)
    seconds, history = _fit(model, train, as_json or helper,
                            valid=split_obj.test if split_obj else None,
                            catalog=dataset.catalog if dataset else None, max_memory=limit,
                            group=group, shards=shards)
    if helper:
        _serve_evaluation(group, model)
        return
    metrics: dict[str, float] = {}
    with _evaluation_across(group, model) as ranker:
        if split_obj is not None:
            metrics = evaluate(model, split_obj, k=k, catalog=dataset.catalog, ranker=ranker).metrics
    dataset_label = Path(dataset.name).stem if Path(dataset.name).suffix else dataset.name
    target = out_dir or Path("runs") / f"{dataset_label}-{model_name}"
    save_model(
        model,
        target,
        catalog=dataset.catalog,
        metrics=metrics,
        history=history,
        data={"dataset": dataset.name, "split": split_obj.recipe if split_obj else "none",
              "fingerprint": train.fingerprint(), "train_ratings": len(train),
              "fit_seconds": round(seconds, 4)},
    )
    if plot is not None:
        from movierec.plots import learning_curves

        learning_curves(history, plot, title=f"{model_name} on {dataset.name}")
    payload = {"model": model_name, "params": model.get_params(), "dataset": dataset.name,
               "split": split, "fit_seconds": seconds, "metrics": metrics,
               "artifact": str(target), "plot": str(plot) if plot else None}
    if as_json:
        _print_json(payload)
        return
    out.print(f"[green]✓[/] trained {model_name} on {len(train):,} ratings of {dataset.name} "
              f"in {seconds:.2f} s")
    if metrics:
        out.print(_metrics_table(f"{model_name} on {dataset.name} ({split})", metrics))
    if plot is not None:
        out.print(f"learning curves: {plot}")
    out.print(f"saved to {target}   (try: movierec recommend --model-dir {target} --user ID)")


@app.command("evaluate")
@_handle_errors
def evaluate_command(
    name: NameArg,
    model_name: ModelOpt = "bias",
    split: SplitOpt = "random:0.9:42",
    param: ParamOpt = None,
    k: KOpt = 10,
    mirror: MirrorOpt = None,
    data_dir: DataDirOpt = None,
    movies: MoviesOpt = None,
    per_user: Annotated[
        Path | None, typer.Option("--per-user", help="Write per-user metrics to this CSV file.")
    ] = None,
    max_memory: MaxMemoryOpt = None,
    distributed: DistributedOpt = False,
    dist_timeout: DistTimeoutOpt = 600.0,
    as_json: JsonOpt = False,
) -> None:
    """Train on a split's train part and report rating and top-N metrics on its test part."""
    from movierec.eval.protocol import evaluate
    from movierec.models.registry import create_model, parse_params

    model = create_model(model_name, **parse_params(model_name, param or []))
    limit = _max_memory(max_memory)
    group = _join(distributed, dist_timeout, model_name)
    helper = group is not None and not group.is_main  # a rank > 0: trains its shard, says nothing
    dataset, split_obj, train, shards = _prepare(group, model, name, split, k, as_json or helper,
                                                 mirror, data_dir, movies)
    seconds, _ = _fit(model, train, as_json or helper, catalog=dataset.catalog if dataset else None,
                      max_memory=limit, group=group, shards=shards)
    if helper:
        _serve_evaluation(group, model)
        return
    with _evaluation_across(group, model) as ranker:
        report = evaluate(model, split_obj, k=k, catalog=dataset.catalog, ranker=ranker)
    report.timings["fit_s"] = seconds
    if per_user is not None:
        report.per_user.to_csv(per_user, index=False)
    if as_json:
        _print_json(report.to_dict())
        return
    out.print(_metrics_table(f"{model_name} on {dataset.name} ({split_obj.recipe})",
                             report.metrics))
    out.print(f"fit {seconds:.2f} s; {report.info.get('users_evaluated', 0):,} users evaluated"
              f", {report.info.get('fallbacks', 0):,} fallback predictions")


@app.command("compare")
@_handle_errors
def compare_command(
    name: NameArg,
    models: Annotated[str, typer.Option("--models", "-m", help="Comma-separated model names, "
                                        "e.g. bias,biased-mf-als.")],
    split: SplitOpt = "random:0.9:42",
    k: KOpt = 10,
    mirror: MirrorOpt = None,
    data_dir: DataDirOpt = None,
    movies: MoviesOpt = None,
    plot: PlotOpt = None,
    max_memory: MaxMemoryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train several models (default hyperparameters) on one split: a table, optionally a bar chart."""
    from movierec.data.split import make_split
    from movierec.eval.protocol import evaluate
    from movierec.models.core.memory import check_fit_memory
    from movierec.models.registry import create_model

    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise ConfigError("--models needs at least one model name")
    fresh = {n: create_model(n) for n in names}  # unknown names fail before any data is loaded
    _check_png(plot)
    limit = _max_memory(max_memory)
    dataset = _load(name, mirror, data_dir, movies, as_json)
    split_obj = make_split(dataset, split)
    train = split_obj.train
    for model in fresh.values():  # refuse a model that cannot fit before training the others
        check_fit_memory(model, train.n_users, train.n_items, len(train), limit)
    results: dict[str, dict[str, float]] = {}
    for model_name, model in fresh.items():
        seconds, _ = _fit(model, train, as_json, catalog=dataset.catalog, max_memory=limit)
        report = evaluate(model, split_obj, k=k, catalog=dataset.catalog)
        results[model_name] = {**report.metrics, "fit_s": seconds}
    if plot is not None:
        from movierec.plots import model_comparison

        wanted = ["rmse", "mae", f"ndcg@{k}", f"precision@{k}", f"recall@{k}", "fit_s"]
        shown = [m for m in wanted if all(m in r for r in results.values())]
        model_comparison(results, plot, metrics=shown,
                         title=f"{dataset.name}, split {split_obj.recipe}")
    if as_json:
        _print_json({"dataset": dataset.name, "split": split_obj.recipe, "k": k,
                     "results": results, "plot": str(plot) if plot else None})
        return
    # One row per metric, one column per model: fits a terminal for the handful of models compared.
    metric_names = list(dict.fromkeys(key for r in results.values() for key in r))
    table = Table("metric", *results, title=f"{dataset.name} ({split_obj.recipe})")
    for metric in metric_names:
        table.add_row(metric, *(f"{r[metric]:.4f}" if metric in r else "-" for r in results.values()))
    out.print(table)
    if plot is not None:
        out.print(f"chart: {plot}")


@app.command("tune")
@_handle_errors
def tune_command(
    name: NameArg,
    model_name: ModelOpt = "ease",
    split: SplitOpt = "user-ratio:0.8:42",
    trials: Annotated[int, typer.Option("--trials", "-n", help="How many settings to try.", min=1)] = 30,
    metric: Annotated[str, typer.Option("--metric", help="What to optimise: ndcg@10, recall@20, "
                                        "map@10, ... (maximised) or rmse, mae (minimised).")
                      ] = "ndcg@10",
    valid: Annotated[str, typer.Option("--valid", help="How to carve the validation part out of the "
                                       "TRAIN part (a split spec; the test part is never used).")
                     ] = "user-ratio:0.8:0",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Hold a hyperparameter "
                                                    "fixed, name=value; repeatable.")] = None,
    space: Annotated[list[str] | None, typer.Option(
        "--space", help="Search range: reg=1e-3:10:log, factors=16:256:int, similarity=cosine,bm25 "
        "(default: the model's built-in ranges); repeatable.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the search.", min=0)] = 0,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Save the best setting, fitted on the train part, as an artifact folder "
        "whose manifest records the search (written atomically).")] = None,
    k: KOpt = 10,
    mirror: MirrorOpt = None,
    data_dir: DataDirOpt = None,
    movies: MoviesOpt = None,
    max_memory: MaxMemoryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search a model's hyperparameters (optuna TPE) on a validation part carved out of the split's
    train part, then fit the best setting on the whole train part and report it on the test part."""
    from movierec.data.split import make_split
    from movierec.eval.protocol import evaluate
    from movierec.models.core.memory import check_fit_memory
    from movierec.models.registry import create_model, parse_params
    from movierec.tune import parse_space, tune

    fixed = parse_params(model_name, param or [])
    chosen_space = parse_space(model_name, space) if space else None
    limit = _max_memory(max_memory)
    dataset = _load(name, mirror, data_dir, movies, as_json)
    split_obj = None if split.strip().lower() == "none" else make_split(dataset, split)
    train = dataset.ratings if split_obj is None else split_obj.train
    # the trials fit on a carve-out of train: the model with the held settings on all of train
    # bounds them (a trial whose own settings need more fails as a trial)
    check_fit_memory(create_model(model_name, **fixed), train.n_users, train.n_items, len(train),
                     limit)
    progress = Progress(TextColumn(f"tuning {model_name}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[note]}"), TimeRemainingColumn(), console=err,
                        transient=True, disable=as_json)
    with progress:
        task = progress.add_task("tune", total=trials, note="")

        def callback(event: str, info: dict[str, Any]) -> None:
            if event == "trial":
                progress.update(task, completed=info["number"] + 1,
                                note=f"best {metric} {info['best_value']:.4f}")

        result = tune(model_name, train, metric=metric, trials=trials, valid_spec=valid,
                      space=chosen_space, fixed_params=fixed, random_state=seed,
                      catalog=dataset.catalog, callback=callback)
    test_metrics: dict[str, float] = {}
    best = None
    if split_obj is not None or out_dir is not None:
        best = create_model(model_name, **result.best_params)
        seconds, history = _fit(best, train, as_json, catalog=dataset.catalog, max_memory=limit)
    if split_obj is not None:
        test_metrics = {**evaluate(best, split_obj, k=k, catalog=dataset.catalog).metrics,
                        "fit_s": seconds}
    if out_dir is not None:
        from movierec.artifacts import save_model

        save_model(best, out_dir, catalog=dataset.catalog, metrics=test_metrics, history=history,
                   data={"dataset": dataset.name, "split": split_obj.recipe if split_obj else "none",
                         "fingerprint": train.fingerprint(), "train_ratings": len(train),
                         "fit_seconds": round(seconds, 4),
                         "tune": result.to_dict()})
    if as_json:
        _print_json({**result.to_dict(), "test_metrics": test_metrics, "dataset": dataset.name,
                     "split": split_obj.recipe if split_obj else "none",
                     "artifact": str(out_dir) if out_dir else None})
        return
    board = result.leaderboard(10)
    columns = [c for c in board.columns if c not in ("state",)]
    table = Table(*columns, title=f"best {len(board)} of {trials} trials, {metric} on the "
                  f"validation part ({valid})")
    for row in board.itertuples(index=False):
        record = dict(zip(board.columns, row, strict=True))
        table.add_row(*(f"{record[c]:.4g}" if isinstance(record[c], float) else str(record[c])
                        for c in columns))
    out.print(table)
    flags = " ".join(f"--param {key}={value}" for key, value in result.best_params.items())
    out.print(f"best: {flags}")
    if test_metrics:
        out.print(_metrics_table(f"{model_name} (best) on the test part of {split_obj.recipe}",
                                 test_metrics))
    if out_dir is not None:
        out.print(f"saved the best setting to {out_dir}")


# -- recommend ---------------------------------------------------------------------------------
def _parse_rate(values: list[str]) -> list[tuple[str, float]]:
    pairs = []
    for value in values:
        movie, sep, rating = value.partition("=")
        try:
            if not sep or not movie.strip():
                raise ValueError
            pairs.append((movie.strip(), float(rating)))
        except ValueError:
            raise ConfigError(f"--rate must look like MOVIE=RATING (e.g. 1=5), got {value!r}"
                              ) from None
    return pairs


def _movie_rows(catalog: Any, frame: pd.DataFrame, value_column: str) -> list[dict[str, Any]]:
    if catalog is None:
        details = pd.DataFrame({"title": [str(i) for i in frame["item"]],
                                "year": [None] * len(frame), "genres": [[]] * len(frame)})
    else:
        details = catalog.rows(frame["item"].to_numpy())
    rows = []
    for item, value, title, year, genres in zip(
        frame["item"].tolist(), frame[value_column].tolist(), details["title"].tolist(),
        details["year"].tolist(), details["genres"].tolist(), strict=True,
    ):
        rows.append({"item": _plain_id(item), "title": title,
                     "year": None if pd.isna(year) else int(year), "genres": list(genres),
                     value_column: float(value)})
    return rows


def _plain_id(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _title(catalog: Any, item: Any) -> str:
    if catalog is None or item not in catalog:
        return str(item)
    movie = catalog.get(item)
    return f"{movie['title']} ({movie['year']})" if movie.get("year") else str(movie["title"])


def _movies_table(title: str, rows: list[dict[str, Any]], value_column: str) -> Table:
    explained = any(row.get("because") for row in rows)
    columns = ["#", "movie", "title", "year", "genres", value_column]
    table = Table(*columns, *(["because you rated"] if explained else []), title=title)
    for rank, row in enumerate(rows, start=1):
        cells = [str(rank), str(row["item"]), row["title"], _year(row["year"]),
                 _genres(row["genres"]), f"{row[value_column]:.2f}"]
        if explained:
            cells.append("; ".join(f"{b['title']} ({b['rating']:g}★)" for b in row.get("because", [])))
        table.add_row(*cells)
    return table


GenreOpt = Annotated[
    list[str] | None,
    typer.Option("--genre", "-g", help="Only movies of this genre; repeat for any of several."),
]
ExcludeGenreOpt = Annotated[
    list[str] | None, typer.Option("--exclude-genre", help="Never movies of this genre; repeatable.")
]
YearsOpt = Annotated[
    str | None,
    typer.Option("--years", help="Release years FIRST-LAST, inclusive; an end may be left open "
                 "(1990-1999, 2000-, -1980)."),
]
MinRatingsOpt = Annotated[
    int, typer.Option("--min-ratings", help="Only movies with at least this many ratings in training.",
                      min=0)
]


def _parse_years(value: str | None) -> tuple[int | None, int | None] | None:
    from movierec.models.core.filters import parse_years

    if value is None:
        return None
    try:
        return parse_years(value)
    except ConfigError:
        raise ConfigError(f"--years must look like 1990-1999, 2000- or -1980, got {value!r}") from None


def _filters(genre: list[str] | None, exclude_genre: list[str] | None, years: str | None,
             min_ratings: int) -> dict[str, Any]:
    return {"genres": genre or None, "exclude_genres": exclude_genre or None,
            "years": _parse_years(years), "min_ratings": min_ratings}


def _resolve_movie(model: Any, catalog: Any, movie: str) -> Any:
    """A movie given by id, or failing that by title (the best search hit the model knows)."""
    if movie in model.items_:
        return model.items_.ids[model.items_.index(movie)]
    if catalog is not None:
        hits = catalog.search(movie, limit=50)
        known = [i for i in hits["item"].tolist() if i in model.items_]
        if known:
            return known[0]
    raise ConfigError(f"unknown movie {movie!r}: give a movie id from the training data or words "
                      f"of its title")


AnnOpt = Annotated[str, typer.Option(
    "--ann", help="Approximate top-k through a faiss index (models scoring by inner products): auto "
    "(catalogs of 20,000+ movies, unless the model's exact ranking is as fast: iALS's usually is), "
    "on or off. Built on first use, saved in the model folder.")]
ExactOpt = Annotated[bool, typer.Option("--exact",
                                        help="Rank exactly, with no index (the same as --ann off).")]


def _use_ann(model: Any, model_dir: Path, ann: str, exact: bool) -> Any:
    """Attach approximate retrieval per --ann / --exact (`movierec.retrieval.attach`)."""
    from movierec.retrieval import attach

    return attach(model, model_dir, "off" if exact else ann)


@app.command("recommend")
@_handle_errors
def recommend_command(
    model_dir: Annotated[Path, typer.Option("--model-dir", "-d", help="A trained model folder.")],
    user: Annotated[str | None, typer.Option("--user", "-u", help="A user id from training.")
                    ] = None,
    rate: Annotated[
        list[str] | None,
        typer.Option("--rate", "-r", help="MOVIE=RATING for a new user (MOVIE: an id or a title); "
                     "repeat for several."),
    ] = None,
    k: KOpt = 10,
    genre: GenreOpt = None,
    exclude_genre: ExcludeGenreOpt = None,
    years: YearsOpt = None,
    min_ratings: MinRatingsOpt = 0,
    diversity: Annotated[float, typer.Option("--diversity", help="0 ranks by score; up to 1 trades "
                                             "score for variety of genres (MMR).", min=0.0, max=1.0)
                         ] = 0.0,
    explain: Annotated[int, typer.Option("--explain", help="Name up to N rated movies behind each "
                                         "pick (0: none).", min=0)] = 2,
    history: Annotated[int, typer.Option("--history", help="How many of the user's top-rated "
                                         "movies to show first.", min=0)] = 5,
    ann: AnnOpt = "auto",
    exact: ExactOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Recommend movies to a known user (--user) or to a new one from a few ratings (--rate),
    with the rated movies that explain each pick. A new user may give only --genre to start."""
    from movierec.artifacts import load_model

    if user is not None and rate:
        raise ConfigError("give either --user ID or --rate MOVIE=RATING ..., not both")
    if user is None and not rate and not genre:
        raise ConfigError("give --user ID, or one or more --rate MOVIE=RATING (or at least --genre)")
    filters = _filters(genre, exclude_genre, years, min_ratings)
    artifact = load_model(model_dir)
    model, catalog = artifact.model, artifact.catalog
    if user is not None:
        rated = model.user_history(user)  # an unknown user fails here, before any index is built
        _use_ann(model, model_dir, ann, exact)
        recs = model.recommend(user, k=k, diversity=diversity, explain=explain, **filters)
        who = f"user {user}"
    else:
        pairs, unknown = [], []
        for movie, rating in _parse_rate(rate or []):
            try:
                pairs.append((_resolve_movie(model, catalog, movie), rating))
            except ConfigError:
                unknown.append(movie)
        if rate and not pairs:
            raise ConfigError(f"none of the rated movies is known to the model "
                              f"(e.g. {unknown[0]}); use movie ids or titles from the training data")
        pairs = list(dict(pairs).items())
        rated = pd.DataFrame({"item": [m for m, _ in pairs], "rating": [r for _, r in pairs]})
        recs = model.recommend_for_ratings(pairs, k=k, diversity=diversity, explain=explain,
                                           **filters)
        who = "a new user"
        if unknown:
            err.print(f"[yellow]note:[/] ignored movies unknown to the model: "
                      f"{', '.join(unknown)}")
    rated_rows = _movie_rows(catalog, rated.head(history) if user is not None else rated, "rating")
    rec_rows = _movie_rows(catalog, recs, "score")
    if explain:
        stars = dict(zip(rated["item"].tolist(), rated["rating"].tolist(), strict=True))
        for row, because in zip(rec_rows, recs["because"].tolist(), strict=True):
            row["because"] = [{"item": _plain_id(b), "title": _title(catalog, b),
                               "rating": float(stars[b])} for b in because]
    if as_json:
        _print_json({"user": user, "rated": rated_rows, "recommendations": rec_rows,
                     "model": artifact.manifest.get("model")})
        return
    if rated_rows:
        heading = f"Movies {who} rated" + (" highest" if user is not None else "")
        out.print(_movies_table(heading, rated_rows, "rating"))
    if not rec_rows:
        out.print("no movie passes these filters")
        return
    out.print(_movies_table(f"Top {k} for {who} ({artifact.manifest.get('model')})", rec_rows,
                            "score"))


@app.command("recommend-all")
@_handle_errors
def recommend_all_command(
    model_dir: Annotated[Path, typer.Option("--model-dir", "-d", help="A trained model folder.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The Parquet file to write (columns "
                                           "user, rank, item, score; replaced if it exists).")],
    k: Annotated[int, typer.Option("--k", "-k", help="Movies per user.", min=1)] = 100,
    include_seen: Annotated[bool, typer.Option("--include-seen", help="Also recommend movies the "
                                               "user rated in training.")] = False,
    chunk_users: Annotated[int | None, typer.Option("--chunk-users", min=1, help="Users per chunk "
                           "(default: about 16 million scores a chunk, or 4,096 users through a "
                           "faiss index); memory grows with it.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Chunks computed at once, one "
                                         "thread each.")] = 2,
    ann: AnnOpt = "auto",
    exact: ExactOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write the top-k movies of every user of the training data to a Parquet file, a chunk of users
    at a time (for batch jobs: emails, caches, offline evaluation)."""
    from movierec.artifacts import load_model
    from movierec.export import recommend_all

    model = load_model(model_dir).model
    retriever = _use_ann(model, model_dir, ann, exact)
    progress = Progress(TextColumn("recommending"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("users"), TimeRemainingColumn(), console=err, transient=True,
                        disable=as_json)
    with progress:
        task = progress.add_task("users", total=len(model.users_))
        summary = recommend_all(model, out_file, k, exclude_seen=not include_seen,
                                chunk_users=chunk_users, workers=workers,
                                progress=lambda done, total: progress.update(task, completed=done))
    if retriever is not None:
        summary["ann_recall_at_10"] = retriever.index.recall
    if as_json:
        _print_json({**summary, "k": k, "model": model.name})
        return
    if retriever is not None:
        from movierec.retrieval import describe

        err.print(describe(retriever))
    out.print(f"wrote {summary['rows']:,} recommendations for {summary['users']:,} users to "
              f"{out_file} in {summary['seconds']:.1f} s")


@app.command("similar")
@_handle_errors
def similar_command(
    model_dir: Annotated[Path, typer.Option("--model-dir", "-d", help="A trained model folder.")],
    movie: Annotated[str, typer.Option("--movie", help="A movie id, or words of its title.")],
    k: KOpt = 10,
    genre: GenreOpt = None,
    exclude_genre: ExcludeGenreOpt = None,
    years: YearsOpt = None,
    min_ratings: MinRatingsOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Movies most similar to one movie, by the model's own item representation."""
    from movierec.artifacts import load_model

    filters = _filters(genre, exclude_genre, years, min_ratings)
    artifact = load_model(model_dir)
    model, catalog = artifact.model, artifact.catalog
    item = _resolve_movie(model, catalog, movie)
    rows = _movie_rows(catalog, model.similar_items(item, k=k, **filters), "score")
    source = _movie_rows(catalog, pd.DataFrame({"item": [item], "score": [1.0]}), "score")[0]
    if as_json:
        source.pop("score")
        _print_json({"movie": source, "similar": rows, "model": artifact.manifest.get("model")})
        return
    out.print(_movies_table(f"Movies like {_title(catalog, item)} "
                            f"({artifact.manifest.get('model')})", rows, "score"))


@app.command("map")
@_handle_errors
def map_command(
    model_dir: Annotated[Path, typer.Option("--model-dir", "-d", help="A trained model folder.")],
    plot: Annotated[Path, typer.Option("--plot", "-o", help="The .png file to write.")],
    min_ratings: Annotated[int, typer.Option("--min-ratings", help="Only movies with at least this "
                                             "many training ratings (less clutter).", min=0)] = 20,
    labels: Annotated[int, typer.Option("--labels", help="Name this many of the most rated movies.",
                                        min=0)] = 12,
    as_json: JsonOpt = False,
) -> None:
    """A 2-D map of the movies as the model sees them (principal axes of its item vectors),
    coloured by genre: similar movies sit close together."""
    from movierec.artifacts import load_model
    from movierec.plots import movie_map, project_2d

    _check_png(plot)
    artifact = load_model(model_dir)
    model, catalog = artifact.model, artifact.catalog
    vectors = model.item_vectors()
    if vectors is None:
        raise ConfigError(f"{model.name} has no item vectors to map; use a factor model such as "
                          f"biased-mf-als, ials or mult-vae")
    counts = np.diff(model.seen_.tocsc().indptr)
    keep = np.flatnonzero(counts >= min_ratings)
    if len(keep) < 2:
        raise ConfigError(f"fewer than 2 movies have {min_ratings}+ ratings; lower --min-ratings")
    coords = project_2d(vectors[keep])
    ids = model.items_.ids[keep]
    if catalog is not None:
        genres = [g[0] if len(g) else "(none)" for g in catalog.rows(ids)["genres"]]
    else:
        genres = ["movie"] * len(ids)
    top = np.argsort(-counts[keep], kind="stable")[:labels]
    movie_map(coords, genres, plot, labels={int(r): _title(catalog, ids[r]) for r in top},
              title=f"{artifact.manifest.get('model')}: movies by learned similarity")
    if as_json:
        _print_json({"plot": str(plot), "movies": len(keep)})
        return
    out.print(f"map of {len(keep):,} movies: {plot}")


# -- serve ---------------------------------------------------------------------------------------
@app.command("serve")
@_handle_errors
def serve_command(
    model_dir: Annotated[Path | None, typer.Option(
        "--model-dir", "-d", help="A trained model folder, published to every replica of the database. "
        "Leave it out to join a running service: serve what its database publishes.")] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.", min=1, max=65535)] = 8000,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="SQLAlchemy URL of the store every replica shares (profiles, ratings, the "
        "served model version, retrain jobs); e.g. postgresql+psycopg://user:pass@host:5432/movierec. "
        "Default: $MOVIEREC_DATABASE_URL, else SQLite in the data folder.")] = None,
    admin_token: Annotated[str | None, typer.Option(
        "--admin-token", help="Token for /api/admin/* (default: $MOVIEREC_ADMIN_TOKEN; unset: admin "
        "endpoints refuse).")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", "-w", min=1, help="Server processes on this machine, each a replica of the "
        "database (SQLite: one machine only; PostgreSQL: any number of machines).")] = 1,
    sync_interval: Annotated[float, typer.Option(
        "--sync-interval", min=0.05, help="Seconds between a replica's looks for a model published "
        "through another (a reload or retrain reaches every replica within this plus the load time).")
    ] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Serve the model over HTTP: the JSON API under /api (schema at /openapi.json) and the web page at
    /, with new people's profiles and ratings kept in a database that every replica shares."""
    from movierec.service import serve

    serve(model_dir, host, port, database_url=database_url, admin_token=admin_token,
          log_level="warning" if as_json else "info", workers=workers, sync_interval=sync_interval)


# Typer's usage errors are click's, or since typer 0.2x its own vendored copy; reach the class
# through the public `typer.BadParameter` so both work.
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


def main() -> None:
    """Console-script entry point: usage errors too become one line and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except _UsageError as exc:
        message = exc.format_message()  # type: ignore[attr-defined]
        if not message:  # bare `movierec` / `movierec data`: the help was already shown
            sys.exit(2)
        context = getattr(exc, "ctx", None)
        hint = f" (see: {context.command_path} --help)" if context is not None else ""
        err.print(f"[bold red]error:[/] {message}{hint}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        err.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
