"""The documents stay inside the project: every file a README or docs/ page points to is in the
repository, so a user who clones it finds what the documents name.

Checked in README.md, docs/*.md and benchmarks' README files:

- every relative link ``[text](target)`` (anchors included) resolves to a file or folder inside the
  repository, and ``#anchor`` to a heading of the target;
- no path climbs out of the repository (``../shared/...`` from the project root);
- every path that starts at a top-level folder of the project (``docs/``, ``benchmarks/``, ``scripts/``,
  ``tests/``, ``src/``, ``.ci/``), in prose or code, exists; a span that starts with ``git`` may name a
  file from the history;
- every Markdown file named without a folder (``experiments.md``) exists somewhere in the project.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted({ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("benchmarks/**/*.md")})
TOP_FOLDERS = ("docs", "benchmarks", "scripts", "tests", "src", ".ci")
_SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "build", "dist", "runs", "out"}

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I)
CLIMB = re.compile(r"(?<![\w./-])((?:\.\./)+[\w.\-/]*)")
ROOTED = re.compile(r"(?<![\w./$<-])((?:" + "|".join(re.escape(t) for t in TOP_FOLDERS) + r")/[\w.\-/]*)")
MD_NAME = re.compile(r"(?<![\w./-])([\w.-]+\.md)\b")


def _markdown_files(root: Path) -> set[str]:
    names = set()
    for path in root.rglob("*.md"):
        if not _SKIPPED_DIRS.intersection(path.relative_to(root).parts):
            names.add(path.name)
    return names


def _prose(text: str) -> str:
    """The text without fenced blocks and code spans (where links are not links)."""
    return CODE_SPAN.sub(" ", FENCE.sub("\n", text))


def _without_history(text: str) -> str:
    """The text without code spans that start with `git` (they may name files the tree no longer has)
    and without URLs."""
    text = CODE_SPAN.sub(lambda m: " " if m.group(2).lstrip().startswith("git ") else m.group(0), text)
    return URL.sub(" ", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its words
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (repeats numbered as GitHub does)."""
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("\n", path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def link_problems(document: Path, root: Path = ROOT) -> list[str]:
    text = document.read_text(encoding="utf-8")
    prose = _prose(text)
    problems = []
    for target in [*LINK.findall(prose), *REFERENCE.findall(prose)]:
        if URL.match(target) or target.startswith(("mailto:", "//")):
            continue
        where, _, anchor = target.partition("#")
        resolved = (document.parent / where).resolve() if where else document
        if where.startswith("/") or not _inside(resolved, root):
            problems.append(f"link {target!r} points outside the repository")
            continue
        if not resolved.exists():
            problems.append(f"link {target!r}: {resolved.relative_to(root)} does not exist")
            continue
        if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"link {target!r}: no heading with anchor #{anchor} in "
                            f"{resolved.relative_to(root)}")
    return problems


def path_problems(document: Path, root: Path = ROOT) -> list[str]:
    text = _without_history(document.read_text(encoding="utf-8"))
    problems = []
    for found in CLIMB.findall(text):
        if not _inside(document.parent / found, root):
            problems.append(f"{found!r} points outside the repository")
    for found in ROOTED.findall(text):
        path = found.rstrip(".,;:")
        if not (root / path).exists():
            problems.append(f"{path!r} does not exist in the repository")
    names = _markdown_files(root)
    for found in MD_NAME.findall(text):
        if found not in names:
            problems.append(f"{found!r} names a Markdown file the repository does not hold")
    return problems


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository_and_resolve(document: Path) -> None:
    problems = link_problems(document)
    assert not problems, f"{document.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_paths_named_in_documents_exist_in_the_repository(document: Path) -> None:
    problems = path_problems(document)
    assert not problems, f"{document.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


def test_the_documents_are_found() -> None:
    names = {str(p.relative_to(ROOT)) for p in DOCUMENTS}
    assert {"README.md", "docs/design.md", "docs/evaluation.md", "docs/service.md", "docs/cli.md",
            "docs/experiments.md"} <= names


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    # A stand-in project: the checks must flag each kind of bad reference and pass the good ones.
    project = tmp_path / "project"
    (project / "docs").mkdir(parents=True)
    (project / "docs" / "guide.md").write_text("# Guide\n\n## Two words\n")
    readme = project / "README.md"
    readme.write_text(
        "[ok](docs/guide.md#two-words) [top](#title) [up](../outside.md) [gone](docs/none.md)\n"
        "[bad anchor](docs/guide.md#nope) see `../shared/BENCHMARKS.md` and `docs/missing.py`;\n"
        "BENCHMARKS.md, guide.md, `git show HEAD:docs/old.py`, https://example.com/src/x.py\n"
        "# Title\n")
    (tmp_path / "outside.md").write_text("# Outside\n")  # exists, but not in the project
    links = link_problems(readme, project)
    paths = path_problems(readme, project)
    assert len(links) == 3, links
    assert any("'../outside.md' points outside" in p for p in links)
    assert any("docs/none.md does not exist" in p for p in links)
    assert any("#nope" in p for p in links)
    assert any("'../shared/BENCHMARKS.md' points outside" in p for p in paths)
    assert any("'docs/missing.py' does not exist" in p for p in paths)
    assert any("'BENCHMARKS.md' names a Markdown file" in p for p in paths)
    assert not any("guide.md'" in p or "old.py" in p or "x.py" in p for p in paths), paths
