"""test_docs.py — runs every ```python block of docs/python.md as a doctest (one test per block,
each in a fresh namespace holding `kiln` and `np`), checking the printed outputs."""
import doctest
import pathlib
import re

import numpy as np
import pytest

import kiln

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "python.md"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def python_blocks(path):
    """(first line number, text) of each fenced ```python block."""
    blocks, text = [], path.read_text()
    for m in re.finditer(r"^```python\n(.*?)^```$", text, re.M | re.S):
        blocks.append((text.count("\n", 0, m.start()) + 2, m.group(1)))
    return blocks


BLOCKS = python_blocks(DOC)


def test_every_block_is_a_doctest():
    assert len(BLOCKS) >= 10
    for line, text in BLOCKS:
        assert doctest.DocTestParser().get_examples(text), f"docs/python.md:{line}: a python block without >>> examples"


@pytest.mark.parametrize("line,text", BLOCKS, ids=[f"python.md:{line}" for line, _ in BLOCKS])
def test_doc_block(line, text):
    test = doctest.DocTestParser().get_doctest(text, {"kiln": kiln, "np": np}, f"python.md:{line}", str(DOC), line - 1)
    report = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, out=report.append, clear_globs=True)
    assert result.failed == 0, "".join(report)
