"""The documentation site: a strict MkDocs build, the generated references, and the tutorials run.

- The site builds with ``mkdocs build --strict``: a broken link or anchor, a missing page, a reference
  mkdocstrings cannot resolve or a docstring it cannot render fails the build, so it fails CI.
- The CLI and study-file references are generated from the code (``docs/hooks.py``): every command of
  the typer app and every key of the study file appear in the built pages.
- Every ``bash`` block of a tutorial runs, in order, in a fresh folder, as a reader would paste it. The one
  change: the tutorial's first line ``N=<patients>`` is set to a small cohort, so the page runs in about a
  minute; everything else is the page's own text.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# No skip: quickstart.sh installs the [docs] extra, and a docs build that cannot run must fail CI.


def bash_blocks(page: Path) -> list[str]:
    """The ```bash fenced blocks of a Markdown page, in order."""
    return re.findall(r"^```bash\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, encoding="utf-8", errors="replace", timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return out


def _nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_strict_build_has_every_page_of_the_nav(site):
    import yaml
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    pages = _nav_pages(nav)
    assert len(pages) >= 30
    for page in pages:
        html = site / (page[:-3].removesuffix("index") + "/index.html").lstrip("/")
        if page == "index.md":
            html = site / "index.html"
        assert html.is_file(), f"{page} was not built"
    # every Markdown page under docs/ is in the nav (no orphan a reader cannot reach)
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert on_disk == set(pages), on_disk ^ set(pages)


def test_cli_reference_lists_every_command_and_option(site):
    import typer.main
    from gastrorad.cli import app
    html = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="gastrorad")
    names = group.list_commands(ctx)
    assert {"run", "predict", "init", "serve", "synth", "validate"} <= set(names)
    for name in names:
        assert f"gastrorad {name}</code>" in html, name
        for p in group.get_command(ctx, name).params:
            for opt in p.opts if p.param_type_name == "option" else []:
                assert f"<code>{opt}</code>" in html, (name, opt)


def test_study_file_reference_lists_every_key_with_default_and_description(site):
    from gastrorad.config.study import StudyConfig
    sys.path.insert(0, str(DOCS))
    try:
        import hooks
    finally:
        sys.path.remove(str(DOCS))
    rows = hooks.study_rows(StudyConfig)
    assert len(rows) > 200
    html = (site / "reference" / "study-file" / "index.html").read_text(encoding="utf-8")
    for key, _, _, _ in rows:
        assert f"<code>{key}</code>" in html, key
    undocumented = [key for key, _, _, desc in rows if not desc.strip()]
    assert not undocumented, f"study-file keys without a description: {undocumented}"
    # the newcomer's question: what features.pooling does and its default
    row = re.search(r"<code>features\.pooling</code></td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>", html, re.S)
    assert row and "roi_std" in row.group(1) and "ROI" in row.group(3)


def test_api_reference_names_the_r_function_delong_test_mirrors(site):
    html = (site / "reference" / "api" / "stats-binary" / "index.html").read_text(encoding="utf-8")
    assert 'id="gastrorad.stats.roc.delong_test"' in html
    section = html[html.index('id="gastrorad.stats.roc.delong_test"'):][:6000]
    assert "roc.test" in section


# page -> run folders whose report must exist. The cohort size of the test is the page's own comment
# "the docs test runs this page with N=<n>": the smallest at which every categorical level of the held-out cohorts
# also occurs in training (else validate refuses the study, as it should).
TUTORIALS = {
    "first-study.md": ["mystudy/run"],
    "s1.md": ["runs/s1"],
    "s2.md": ["runs/s2"],
    "s3.md": ["runs/s3"],
    "s4.md": ["runs/s4"],
    "s5.md": ["runs/s5"],
    "serve.md": ["runs/s1"],
}


def run_tutorial(page: str, tmp_path: Path) -> None:
    runs = TUTORIALS[page]
    blocks = bash_blocks(DOCS / "tutorials" / page)
    assert blocks, f"{page} has no bash block"
    script = "\n".join(blocks)
    assert re.match(r"N=\d+", script), f"{page}: the first line must set N (the cohort size)"
    said = re.search(r"the docs test runs this page with N=(\d+)", script)
    assert said, f"{page}: the N= line must say with which N the docs test runs the page"
    n = int(said.group(1))
    script = re.sub(r"^N=\d+", f"N={n}", script, count=1)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    # utf-8 whatever the locale (CI may run without LANG): the commands print rich tables with box characters
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, encoding="utf-8", errors="replace", timeout=1200)
    assert proc.returncode == 0, f"{page} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    for run in runs:
        metrics = json.loads((tmp_path / run / "metrics" / "metrics.json").read_text())
        assert metrics["tables"]["performance"], run
        assert (tmp_path / run / "report.html").is_file(), run


def _check_reference_pages(folder: Path) -> None:
    """The run-folder and metrics references describe what the S1 tutorial's run wrote."""
    run = folder / "runs" / "s1"
    table = (DOCS / "reference" / "run-folder.md").read_text(encoding="utf-8")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) >= 10
    for row in rows:
        paths = re.findall(r"`([^`]+)`", row.split("|")[1])
        if ", when " in row:  # written only for some studies; the row says when
            continue
        for rel in paths:
            assert list(run.glob(rel.rstrip("/"))), f"run-folder.md lists {rel}, which the S1 run did not write"
    bundle_doc = (DOCS / "reference" / "bundle.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `([a-z_]+)` \|", bundle_doc.split("<!-- metrics-keys -->")[1]
                            .split("<!-- /metrics-keys -->")[0], flags=re.M)
    written = json.loads((run / "metrics" / "metrics.json").read_text())
    assert set(documented) == set(written), set(documented) ^ set(written)


def _check_predictions(folder: Path) -> None:
    assert (folder / "mystudy" / "predictions" / "predictions.csv").is_file()


def _check_served_models(folder: Path) -> None:
    models = json.loads((folder / "models.json").read_text())
    assert [m["id"] for m in models][0].startswith("s1_nact_resistance")


def _tutorial_test(page: str, check=None):
    """A test class for one tutorial: pytest-xdist's loadscope spreads classes over the workers."""
    def test_runs(self, tmp_path):
        run_tutorial(page, tmp_path)
        if check is not None:
            check(tmp_path)
    return type(f"Test_{page}", (), {"test_runs": test_runs, "__doc__": f"docs/tutorials/{page} runs as written."})


TestFirstStudyTutorial = _tutorial_test("first-study.md", _check_predictions)
TestS1Tutorial = _tutorial_test("s1.md", _check_reference_pages)
TestS2Tutorial = _tutorial_test("s2.md")
TestS3Tutorial = _tutorial_test("s3.md")
TestS4Tutorial = _tutorial_test("s4.md")
TestS5Tutorial = _tutorial_test("s5.md")
TestServeTutorial = _tutorial_test("serve.md", _check_served_models)


def test_docstring_examples_are_doctests_that_pass():
    """Every ``>>>`` example in gastrorad's docstrings runs and prints what it shows (the R values in the
    examples' comments are pROC's and binom.test's for the same data)."""
    import doctest
    import importlib
    src = ROOT / "src"
    modules = sorted(".".join(p.relative_to(src).with_suffix("").parts) for p in (src / "gastrorad").rglob("*.py")
                     if ">>> " in p.read_text(encoding="utf-8"))
    assert "gastrorad.stats.roc" in modules
    for name in modules:
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, (name, result)
