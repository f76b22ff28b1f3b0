"""The docs cannot rot: every relative link and `#anchor` in README.md, CHANGES.md and
docs/**/*.md resolves (GitHub's heading slugs), every setting in `core/config.py` has a
row in docs/configuration.md with the same default, and no file cites a document the
repository lacks (a file name, a contract, a README section that moved)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.paths import ROOT

from standalone_mfa.core import config

PAGES = sorted([ROOT / "README.md", ROOT / "CHANGES.md", *(ROOT / "docs").rglob("*.md")])
CONFIGURATION = ROOT / "docs" / "configuration.md"

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|([^|]*)\|")

# Documents cited by a name rather than a file, none of them in the repository.
UNNAMED_DOCUMENTS = re.compile(r"design card|\w+ contract\b|the contract\b", re.IGNORECASE)
CITED_FILE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")
# "README, "Languages"", "README's Deploy", "README Layout": a section of the README.
README_SECTION = re.compile(
    r"\bREADME(?:\.md)?(?:'s|,)?\s+(?:\"([^\"]+)\"|([A-Z][\w-]*)(?=[\s),.;:]))"
)
SCANNED = {".py", ".md", ".html", ".txt", ".cfg", ".toml", ".conf", ".ini", ".sh", ".yml"}
SCANNED_NAMES = {"Makefile", "Caddyfile", "run"}
# Not the project's own text: caches, environments, build output, runtime data.
SKIPPED_DIRS = {"node_modules", "instance", "results", "__pycache__", "build", "dist"}


def outside_fences(text: str) -> list[tuple[int, str]]:
    """The lines outside code fences, numbered from 1."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower-cased, without
    punctuation other than `-` and `_`, spaces turned into dashes."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[*`]|(?<!\w)_|_(?!\w)", "", text)  # emphasis and code marks
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated one gets -1, -2, … as on GitHub."""
    found, seen = set(), {}
    for _number, line in outside_fences(page.read_text()):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def link_problems(page: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for number, line in outside_fences(page.read_text()):
        for target in LINK.findall(INLINE_CODE.sub("``", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue  # https:, mailto:: not ours to check
            path, _, anchor = target.partition("#")
            where = f"{page.relative_to(root)}:{number}: {target}"
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                problems.append(f"{where}: no such file")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{where}: no heading with that anchor")
    return problems


def test_every_relative_link_and_anchor_resolves():
    assert len(PAGES) >= 20  # README, CHANGES and the docs tree, not an empty glob
    problems = [problem for page in PAGES for problem in link_problems(page)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        (
            "The latest run (2026-12-01, after the gateway and operations)",
            "the-latest-run-2026-12-01-after-the-gateway-and-operations",
        ),
        ("Administration » Users", "administration--users"),
        ("`MFA_LOCK_AFTER` and *friends*", "mfa_lock_after-and-friends"),
        ("How to add a [migration](x.md)", "how-to-add-a-migration"),
    ],
)
def test_slug_is_githubs(heading, anchor):
    assert slug(heading) == anchor


def test_a_broken_link_and_anchor_are_found(tmp_path):
    (tmp_path / "b.md").write_text("# Here\n\n## Here\n")
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](b.md#here-1) [gone](c.md) [bad](b.md#there) [self](#top)\n"
        "```\n[in code](nowhere.md)\n```\n`[inline](nowhere.md)` [web](https://x.test/#y)\n"
    )
    assert link_problems(page, tmp_path) == [
        "a.md:1: c.md: no such file",
        "a.md:1: b.md#there: no heading with that anchor",
        "a.md:1: #top: no heading with that anchor",
    ]


def documented_settings() -> dict[str, str]:
    rows = {}
    for line in CONFIGURATION.read_text().splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = match.group(2).strip()
    return rows


def test_every_setting_has_a_row_with_its_default():
    rows = documented_settings()
    assert len(config.KEYS) >= 40
    missing = sorted(set(config.BY_NAME) - set(rows))
    assert not missing, f"settings without a row in docs/configuration.md: {missing}"
    unknown = sorted(set(rows) - set(config.BY_NAME))
    assert not unknown, f"rows in docs/configuration.md for no setting: {unknown}"
    wrong = []
    for key, default in config.DEFAULTS.items():
        # Numbers and switches must read the same; None and text are explained in words.
        if isinstance(default, bool | int) and rows[key] != f"`{default}`":
            wrong.append(f"{key}: documented {rows[key]}, default `{default}`")
    assert not wrong, "\n".join(wrong)


def scanned_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        hidden = any(
            (part.startswith(".") and part != ".ci") or part.endswith(".egg-info")
            for part in parts[:-1]
        )
        if hidden or SKIPPED_DIRS & set(parts) or not path.is_file():
            continue
        if (path.suffix in SCANNED or path.name in SCANNED_NAMES) and path != Path(__file__):
            files.append(path)
    return files


def citation_problems(
    path: Path, text: str, documents: set[str], readme_sections: set[str]
) -> list[str]:
    """What `text` (of the file at `path`) cites that is missing: `documents` holds the
    repository's Markdown files by path and by name."""
    problems = []
    where = path.relative_to(ROOT)
    flat = re.sub(r"\s+", " ", text)
    for match in UNNAMED_DOCUMENTS.finditer(flat):
        problems.append(f"{where}: cites {match.group(0)!r}, which is not in the repository")
    for name in CITED_FILE.findall(text):
        beside = (path.parent / name).resolve()
        if name not in documents and not (beside.is_relative_to(ROOT) and beside.exists()):
            problems.append(f"{where}: cites {name}, which is not in the repository")
    for quoted, bare in README_SECTION.findall(flat):
        section = (quoted or bare).strip()
        if slug(section) not in readme_sections:
            problems.append(f"{where}: cites README's {section!r}, which README lacks")
    return problems


def repository_documents(files: list[Path]) -> set[str]:
    markdown = [path for path in files if path.suffix == ".md"]
    return {str(path.relative_to(ROOT)) for path in markdown} | {p.name for p in markdown}


def test_no_file_cites_a_document_the_repository_lacks():
    files = scanned_files()
    assert any(path.suffix == ".py" for path in files) and len(files) > 100
    documents, readme_sections = repository_documents(files), anchors(ROOT / "README.md")
    problems = []
    for path in files:
        text = path.read_text(errors="replace")
        problems += citation_problems(path, text, documents, readme_sections)
    assert not problems, "\n".join(problems)


def test_a_citation_of_a_missing_document_is_found():
    path = ROOT / "standalone_mfa" / "example.py"
    text = (
        '"""The rule (PRODUCT.md, the gateway\ncontract); see README, "Languages",\n'
        "README's Deploy section, the design card and docs/nowhere.md; docs/using.md is\n"
        'real."""'
    )
    documents = repository_documents(scanned_files())
    problems = citation_problems(path, text, documents, anchors(ROOT / "README.md"))
    assert problems == [
        "standalone_mfa/example.py: cites 'gateway contract', which is not in the repository",
        "standalone_mfa/example.py: cites 'design card', which is not in the repository",
        "standalone_mfa/example.py: cites PRODUCT.md, which is not in the repository",
        "standalone_mfa/example.py: cites docs/nowhere.md, which is not in the repository",
        "standalone_mfa/example.py: cites README's 'Languages', which README lacks",
    ]
