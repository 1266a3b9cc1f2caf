"""The documentation runs: README.md and docs/**/*.md execute, and the API reference is complete.

- Every Python block of README.md and docs/**/*.md runs, in order, one namespace per page, in
  a temporary directory (Sybil's Markdown parsers: fenced ``python`` blocks, ``>>>`` doctest
  blocks whose printed output is compared, ``<!-- invisible-code-block: python -->`` setup).
  A block that needs network, a GPU or a long training run is marked in the page with
  ``<!-- skip: next "reason" -->``; each such block is reported here as a skipped test with that
  reason, and no other block may skip.
- Every ``keras-se ...`` command of a shell block either runs (a few seconds, in a temp dir) or
  is listed with the reason it does not, and its flags must parse.
- Every public name of the documented modules has a docstring with an example and appears
  in the API reference (docs/api/*.md, rendered by mkdocstrings).
"""

from __future__ import annotations

import importlib
import inspect
import os
import pathlib
import re
import shlex
import subprocess
import sys
import unittest

import pytest

from tests import prefork

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

#: Pages whose examples take 2 s or more in all (full-size models, training): the slow tier.
SLOW_PAGES = {"docs/models.md", "docs/fine-tuning.md", "docs/getting-started.md"}

#: The modules of the API reference (docs/api/). keras_se.finetune, callbacks and predict join
#: when they exist.
API_MODULES = [
    "keras_se",
    "keras_se.models",
    "keras_se.training",
    "keras_se.tuning",
    "keras_se.export",
    "keras_se.analysis",
    "keras_se.visualize",
    "keras_se.weights",
    "keras_se.data",
    "keras_se.finetune",
    "keras_se.callbacks",
    "keras_se.predict",
]

SKIP_DIRECTIVE = re.compile(r"^<!--\s*skip:\s*next\s*(?P<reason>.*?)\s*-->", re.MULTILINE)


def _rel(path):
    return path.relative_to(ROOT).as_posix()


# ---------------------------------------------------------------------------------------------
# Python examples


def _sybil():
    sybil = pytest.importorskip(
        "sybil", reason="the doc tests need the docs extra: pip install -e '.[docs]'"
    )
    from sybil.parsers.markdown import ClearNamespaceParser, PythonCodeBlockParser, SkipParser

    return sybil.Sybil(parsers=[PythonCodeBlockParser(), SkipParser(), ClearNamespaceParser()])


def _skip_directives():
    """(page, line, reason) of every ``<!-- skip: next "reason" -->`` in the pages."""
    found = []
    for path in PAGES:
        text = path.read_text()
        for match in SKIP_DIRECTIVE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((_rel(path), line, match.group("reason").strip().strip("\"'")))
    return found


def _page_param(path):
    name = _rel(path)
    marks = [pytest.mark.slow] if name in SLOW_PAGES else []
    return pytest.param(name, marks=marks, id=name)


def _python_blocks(text):
    return len(re.findall(r"^```python\s*$", text, re.MULTILINE)) + len(
        re.findall(r"^<!--\s*invisible-code-block:\s*python", text, re.MULTILINE)
    )


@pytest.mark.parametrize("name", [_page_param(p) for p in PAGES if _python_blocks(p.read_text())])
def test_page_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    document = _sybil().parse(ROOT / name)
    ran, skipped = 0, []
    for example in document:
        is_code = not isinstance(example.parsed, (tuple, type(None)))  # skip/clear directives are
        try:
            example.evaluate()
        except unittest.SkipTest as skip:
            skipped.append(str(skip))
            continue
        ran += is_code
    # every skip is one of the page's directives, shown with its reason by test_marked_block_is_skipped
    directives = [reason for page, _, reason in _skip_directives() if page == name]
    assert len(skipped) == len(directives), (skipped, directives)
    # every block ran (a doctest block counts once per >>> statement)
    assert ran >= _python_blocks((ROOT / name).read_text()) - len(directives)


@pytest.mark.parametrize(
    "page, line, reason",
    _skip_directives(),
    ids=[f"{p}:{line}" for p, line, _ in _skip_directives()],
)
def test_marked_block_is_skipped(page, line, reason):
    assert len(reason) >= 10, f"{page}:{line}: a skipped block needs its reason"
    pytest.skip(f"{page}:{line}: {reason}")


# ---------------------------------------------------------------------------------------------
# keras-se commands in shell blocks

#: Commands short enough to run, in a temporary directory: command -> takes 2 s or more (slow:
#: it imports TensorFlow, so the test forks it from the preloaded interpreter).
RUN = {
    "keras-se --help": False,
    "keras-se train --help": False,
    "keras-se info": True,  # imports TensorFlow
}

#: Why the others are not run, by subcommand (the first rule that matches).
NOT_RUN = [
    (
        r"^keras-se quickstart",
        "trains for 34 s or more; run end to end by tests/test_quickstart.py",
    ),
    (r"--dataset (cifar|imagenet|imagenette|tf_flowers)", "downloads a TFDS dataset (network)"),
    (r"--distributed|--strategy multi-worker|TF_CONFIG", "needs several processes or hosts"),
    (
        r"^keras-se train",
        "a full training run (minutes or more); tiny runs: tests/test_training.py",
    ),
    (r"^keras-se tune", "a multi-trial search (minutes); tiny searches: tests/test_tuner.py"),
    (r"^keras-se bench", "the benchmark takes minutes to an hour; smoke tests: pytest -m bench"),
    (r"^keras-se convert timm/", "downloads reference weights (network)"),
    (
        r"^keras-se convert",
        "needs a timm state dict file and PyTorch; tested in tests/test_weights.py",
    ),
    (
        r"^keras-se predict",
        "needs a trained model and images; tested in tests/test_predict.py, tests/test_finetune.py",
    ),
    (
        r"^keras-se (export|visualize) runs/",
        "needs a trained run directory; tested in tests/test_export.py, tests/test_visualize.py",
    ),
]


def _shell_commands():
    """(page, command) for every ``keras-se`` command of the pages' bash/sh/shell blocks."""
    found = []
    block = re.compile(r"^```(?:bash|sh|shell|console)\s*\n(.*?)^```", re.MULTILINE | re.DOTALL)
    for path in PAGES:
        for match in block.finditer(path.read_text()):
            joined = re.sub(r"\\\n\s*", " ", match.group(1))
            for line in joined.splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip().rstrip("&").strip()
                line = re.sub(r"^(\w+='[^']*'\s+)+", "", line)  # TF_CONFIG='...' keras-se ...
                if line.startswith("keras-se"):
                    found.append((_rel(path), line))
    return found


def _not_run_reason(command):
    for pattern, reason in NOT_RUN:
        if re.search(pattern, command):
            return reason
    return None


@pytest.mark.parametrize(
    "page, command",
    [
        pytest.param(p, c, marks=[pytest.mark.slow] if RUN.get(c) else [], id=f"{p}:{c[:60]}")
        for p, c in _shell_commands()
    ],
)
def test_shell_command(page, command, tmp_path):
    argv = shlex.split(command)
    if command in RUN:
        if RUN[command]:  # imports TensorFlow: `python -m keras_se_core.cli` (= `keras-se`),
            # forked from the preloaded interpreter (tests/prefork.py; ~6 s less CPU)
            argv = [sys.executable, "-m", "keras_se_core.cli", *argv[1:]]
            run = prefork.run
        else:  # the console script itself (`keras-se --help` starts no framework)
            run = subprocess.run
        result = run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip()
        return
    reason = _not_run_reason(command)
    assert reason, (
        f"{page}: `{command}` is neither run (RUN) nor given a reason (NOT_RUN) in {__file__}"
    )
    if "..." not in argv and not any(a.startswith(("[", "<")) for a in argv):
        from keras_se_core.cli import build_parser

        try:
            build_parser().parse_args(argv[1:])
        except SystemExit as exit_:  # argparse: an unknown flag or a bad value
            pytest.fail(f"{page}: `{command}` does not parse (exit {exit_.code})")
    pytest.skip(f"{page}: `{command}` not run: {reason}")


# ---------------------------------------------------------------------------------------------
# The API reference


def _importable(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _public(module):
    """(qualified name, object) of the module's public functions and classes."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n for n, v in vars(module).items() if getattr(v, "__module__", None) == module.__name__
        ]
    out = []
    for name in names:
        value = getattr(module, name)
        if name.startswith("_") or inspect.ismodule(value) or not callable(value):
            continue  # submodules have their own page; constants (__version__) need no example
        out.append((f"{module.__name__}.{name}", value))
    return out


def _public_names():
    return [item for name in API_MODULES if (m := _importable(name)) for item in _public(m)]


def _has_example(doc):
    return bool(doc) and bool(re.search(r"^\s*Examples?:\s*$|>>>", doc, re.MULTILINE))


def _lacking_examples():
    """The public names whose docstring has neither an ``Example:`` section nor ``>>>``."""
    return sorted(
        name for name, value in _public_names() if not _has_example(inspect.getdoc(value))
    )


def test_every_public_name_has_an_example():
    assert _public_names(), "no public names found"
    missing = _lacking_examples()
    assert not missing, f"{len(missing)} public names lack an Example section or >>>: {missing}"


def test_api_pages_cover_the_modules():
    directives = set()
    for path in (DOCS / "api").glob("*.md"):
        directives |= set(re.findall(r"^::: ([\w.]+)\s*$", path.read_text(), re.MULTILINE))
    expected = {name for name in API_MODULES if _importable(name)}
    assert expected <= directives, sorted(expected - directives)


@pytest.mark.slow
def test_every_public_name_is_in_the_api_reference(tmp_path):
    """Builds the API pages alone (mkdocstrings, a few seconds) and finds each name's anchor."""
    pytest.importorskip("mkdocstrings", reason="needs the docs extra: pip install -e '.[docs]'")
    yaml = pytest.importorskip("yaml")

    class EnvLoader(yaml.SafeLoader):  # mkdocs.yml's `!ENV [NAME, default]` reads as its default
        pass

    EnvLoader.add_constructor("!ENV", lambda loader, node: loader.construct_sequence(node)[-1])
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=EnvLoader)
    docs = tmp_path / "docs"
    (docs / "api").mkdir(parents=True)
    for path in (DOCS / "api").glob("*.md"):
        # links to the topic pages are left out of this partial site
        text = re.sub(r"\[([^\]]+)\]\(\.\./[^)]*\)", r"\1", path.read_text())
        (docs / "api" / path.name).write_text(text)
    (docs / "index.md").write_text("# API\n")
    for key in ("nav", "hooks", "exclude_docs"):
        config.pop(key, None)
    config["plugins"] = [
        p for p in config["plugins"] if not (isinstance(p, dict) and "mkdocs-jupyter" in p)
    ]
    handler = config["plugins"][-1]["mkdocstrings"]["handlers"]["python"]
    handler["paths"] = [str(ROOT)]
    handler["options"]["extensions"] = [
        e.replace("docs/", f"{DOCS}/", 1) for e in handler["options"]["extensions"]
    ]
    config.update(docs_dir=str(docs), site_dir=str(tmp_path / "site"))
    config["markdown_extensions"] = [
        e
        for e in config["markdown_extensions"]
        if not (isinstance(e, dict) and "pymdownx.snippets" in e)
    ]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "mkdocs.yml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    anchors = set()
    for page in (tmp_path / "site" / "api").rglob("index.html"):
        anchors |= set(re.findall(r'id="(keras_se[\w.]*)"', page.read_text()))
    missing = sorted(name for name, _ in _public_names() if name not in anchors)
    assert not missing, f"not in the API reference: {missing}"


# ---------------------------------------------------------------------------------------------
# Docstring examples (the modules whose docstrings the docs own; the others join as their
# examples are written and checked)

DOCTESTED_MODULES = [
    "keras_se/analysis.py",
    "keras_se/speed/rewrite.py",
    "keras_se/utils.py",
    "keras_se/retrofit.py",
    "keras_se/blocks.py",
    "keras_se/info.py",
]
#: Modules whose docstring examples take 2 s or more in all.
SLOW_DOCTESTS = {
    "keras_se/analysis.py",
    "keras_se/speed/rewrite.py",
    "keras_se/utils.py",
    "keras_se/retrofit.py",
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_DOCTESTS else [], id=n)
        for n in DOCTESTED_MODULES
    ],
)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    """The ``>>>`` examples of the module's docstrings run and print what they show (Sybil)."""
    sybil = pytest.importorskip(
        "sybil", reason="the doc tests need the docs extra: pip install -e '.[docs]'"
    )
    import doctest

    from sybil.parsers.rest import DocTestParser

    monkeypatch.chdir(tmp_path)
    document = sybil.Sybil(parsers=[DocTestParser(optionflags=doctest.ELLIPSIS)]).parse(ROOT / name)
    ran = 0
    for example in document:
        example.evaluate()  # a doctest: +SKIP example evaluates to nothing
        ran += 1
    assert ran, f"{name} has no docstring example"
