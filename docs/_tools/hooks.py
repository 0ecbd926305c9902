"""MkDocs hooks of the site: offline JavaScript assets from npm, the helpers the executed blocks import, and a check
that no maths or Sphinx markup reaches a page untypeset.

The math renderer (KaTeX) and Material's ``file://`` search shim (iframe-worker) are not committed: ``nox -s docs``
installs pinned versions with npm and names their ``node_modules`` folder in ``XE_VERIFY_NPM_MODULES``; this hook adds
the files the site needs to the build under ``assets/vendor/``, where ``mkdocs.yml`` refers to them.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import get_plugin_logger
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = get_plugin_logger("xe_verify")

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent.parent
DEFAULT_MODULES = ROOT / ".nox" / "docs" / "npm" / "node_modules"

#: (package folder, files or folders inside it, destination under assets/vendor/)
VENDORED = (
    ("katex/dist", ("katex.min.js", "katex.min.css", "fonts"), "katex"),
    ("iframe-worker/shim", ("index.js",), "iframe-worker"),
)


def _node_modules() -> Path:
    modules = Path(os.environ.get("XE_VERIFY_NPM_MODULES", DEFAULT_MODULES))
    missing = [package for package, names, _ in VENDORED for name in names if not (modules / package / name).exists()]
    if missing:
        raise PluginError(
            f"the site's JavaScript assets are missing from {modules} ({', '.join(sorted(set(missing)))}): build with "
            "`nox -s docs`, which installs them with npm, or set XE_VERIFY_NPM_MODULES to a node_modules folder "
            "holding katex and iframe-worker"
        )
    return modules


def on_startup(command: str, dirty: bool) -> None:
    # The executed blocks run small tensors through torch. Its intra-op thread pool only adds overhead there (on a
    # busy 2-core machine, 40 ms for a forward and backward pass of the XOR network instead of 0.2 ms) and makes
    # reduction order depend on the machine: one thread, set before torch is first imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Executed blocks import the site's helpers (xe_docs) from here.
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))


def on_files(files: Files, config: MkDocsConfig) -> Files:
    modules = _node_modules()
    for package, names, destination in VENDORED:
        source_dir = modules / package
        for name in names:
            paths = sorted((source_dir / name).rglob("*")) if (source_dir / name).is_dir() else [source_dir / name]
            for path in paths:
                if path.is_file():
                    relative = path.relative_to(source_dir).as_posix()
                    files.append(
                        File.generated(config, f"assets/vendor/{destination}/{relative}", abs_src_path=str(path))
                    )
    return files


# Where maths may legitimately appear as source: code, scripts, plots, and the arithmatex elements KaTeX typesets.
NOT_PROSE = re.compile(
    r"<(pre|code|script|style|svg)\b[^>]*>.*?</\1>|<(div|span) class=\"arithmatex\">.*?</\2>|<!--.*?-->", re.DOTALL
)
UNCONVERTED_LINK = re.compile(r'href="((?![a-z]+:)[^"]*\.md(?:#[^"]*)?)"')
LEFTOVER_MARKUP = re.compile(r"\$\$|\\\(|\\\[|\.\. math::|:(?:math|func|class|mod|data|attr|meth|exc|obj):(?!\w)")


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    # A formula that arithmatex did not recognise (a docstring's $$ split over lines, a reST directive the griffe
    # extension does not know) would be printed as raw TeX: a warning, which fails the strict build.
    prose = NOT_PROSE.sub("", html)
    leftovers = list(LEFTOVER_MARKUP.finditer(prose))
    if leftovers:
        first = leftovers[0]
        context = prose[max(0, first.start() - 60) : first.end() + 60].replace("\n", " ")
        log.warning(f"{page.file.src_uri}: {len(leftovers)} piece(s) of maths or Sphinx markup left as text: {context}")
    # MkDocs rewrites (and checks) the links of a page's Markdown, but not those in what an executed block prints.
    for link in UNCONVERTED_LINK.findall(html):
        log.warning(f"{page.file.src_uri}: link {link!r} printed by a code block is not converted: link from the page")
    return html
