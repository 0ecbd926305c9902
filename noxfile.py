"""Developer tasks, named for what a person wants to do.

``nox`` runs tests, lint, typecheck and docs. ``nox -s tests -- -k bce`` passes pytest options,
``nox -s docs -- serve`` serves the site with live reload, ``nox -s bench`` runs the benchmarks.
``nox -R -s tests`` reuses the virtualenv without reinstalling anything (fastest rerun).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

# nox.project.dependency_groups (PEP 735) arrived in 2025.02.09.
nox.needs_version = ">=2025.2.9"
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
# Installing torch is the slowest step of every session: keep the virtualenvs between runs.
nox.options.reuse_existing_virtualenvs = True
# Plain venv + pip: pip's configuration on this machine points at the local torch 2.13.0 CPU
# wheel; uv ignores it and would download a multi-GB CUDA build.
nox.options.default_venv_backend = "venv"
nox.options.error_on_external_run = True

# The local torch wheel is built for CPython 3.11.
PYTHON = "3.11"
ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")


def group(name: str) -> tuple[str, ...]:
    """Requirements of one ``[dependency-groups]`` entry (pip 23 has no ``--group``)."""
    return nox.project.dependency_groups(PYPROJECT, name)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the property suite (Hypothesis profile `ci`) and the docstring examples.

    Arguments after ``--`` replace both default runs with one ``pytest`` call.
    """
    session.install("-e", ".", *group("test"))
    if session.posargs:
        session.run("pytest", *session.posargs)
        return
    session.run("pytest", "-n", "2", "--hypothesis-profile=ci")
    session.run("pytest", "--doctest-modules", "xe_verify")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Lint and check formatting with ruff; arguments go to ``ruff check`` (e.g. ``--fix``)."""
    session.install(*group("lint"))
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """Type-check the package with ``mypy --strict`` (configured in pyproject.toml)."""
    session.install(*group("typecheck"))
    session.run("mypy", *(session.posargs or ["xe_verify"]))


# The math renderer (KaTeX) and Material's file:// shim for search (iframe-worker) are JavaScript packages: the docs
# session installs these pinned versions from npm into its virtualenv, and the site's hook (docs/_tools/hooks.py)
# copies them into site/, so that the site works offline and nothing third-party is committed.
DOCS_NPM_PACKAGES = ("katex@0.16.22", "iframe-worker@1.0.4")


def _install_docs_assets(session: nox.Session) -> None:
    """Install ``DOCS_NPM_PACKAGES`` once per virtualenv; tell mkdocs where they are."""
    prefix = Path(session.virtualenv.location) / "npm"
    stamp = prefix / "installed.txt"
    wanted = "\n".join(DOCS_NPM_PACKAGES)
    if not (stamp.is_file() and stamp.read_text() == wanted):
        if shutil.which("npm") is None:
            session.error(f"the docs need npm (Node.js) to fetch {', '.join(DOCS_NPM_PACKAGES)}")
        npm_install = ["npm", "install", "--prefix", str(prefix), "--no-save", "--no-package-lock"]
        npm_install += ["--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        session.run(*npm_install, *DOCS_NPM_PACKAGES, external=True)
        stamp.write_text(wanted)
    session.env["XE_VERIFY_NPM_MODULES"] = str(prefix / "node_modules")


def _install_docs(session: nox.Session) -> None:
    # The mkdocs command does not put the repository on sys.path: markdown-exec blocks import the
    # installed package.
    session.install(".", *group("docs"))
    _install_docs_assets(session)
    # Material prints a banner about MkDocs 2.0 on every build; pyproject.toml pins mkdocs<2.
    session.env["NO_MKDOCS_2_WARNING"] = "1"


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the site strictly; ``nox -s docs -- serve`` serves it on 127.0.0.1:8000 instead."""
    _install_docs(session)
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", "-a", "127.0.0.1:8000", *session.posargs[1:])
    else:
        # Without --strict a failing markdown-exec block publishes its traceback in the page.
        session.run("mkdocs", "build", "--strict", *session.posargs)


def _chromium(session: nox.Session) -> tuple[str, str]:
    """Debian's chromium and chromium-driver, installed with apt-get when missing (CI runs as root)."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and chromedriver:
        return chromium, chromedriver
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        session.error(
            "the browser test needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
        )
    session.run("apt-get", "update", "-qq", external=True)
    session.run(
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "chromium",
        "chromium-driver",
        external=True,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )
    return "/usr/bin/chromium", "/usr/bin/chromedriver"


@nox.session(python=PYTHON)
def docs_browser(session: nox.Session) -> None:
    """Build the site, serve it on 127.0.0.1 and open every page in headless Chromium (tests/browser).

    Checks each page for console errors, requests leaving 127.0.0.1, untypeset maths and missing plots, and that the
    search answers. Arguments after ``--`` go to pytest.
    """
    _install_docs(session)
    # tests/conftest.py (loaded for any test folder) needs torch and hypothesis: both are in the docs group.
    session.install("selenium>=4.20", "pytest>=8")
    chromium, chromedriver = _chromium(session)
    site = Path(session.create_tmp()) / "site"
    session.run("mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site))
    session.run(
        "pytest",
        "tests/browser",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"XE_VERIFY_SITE": str(site), "XE_VERIFY_CHROMIUM": chromium, "XE_VERIFY_CHROMEDRIVER": chromedriver},
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks package (``python -m benchmarks``); arguments are passed to it."""
    if not (ROOT / "benchmarks" / "__main__.py").is_file():
        session.error(
            "no benchmarks yet: nox -s bench runs `python -m benchmarks`, which needs "
            "benchmarks/__init__.py and benchmarks/__main__.py"
        )
    session.install(".", *group("bench"))
    session.run("python", "-m", "benchmarks", *session.posargs)
