"""The small runnable examples in the docstrings run and print what they say (doctest), in a fresh
namespace each (the module's own globals would shadow builtins such as ``round``)."""
import doctest
import importlib

import pytest

MODULES = ["metalcandle", "metalcandle._graph", "metalcandle._executor", "metalcandle._fusion",
           "metalcandle.fast", "metalcandle.creation", "metalcandle.random", "metalcandle.devices",
           "metalcandle.errors", "metalcandle.metal"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    mod = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(mod, globs={}) if t.examples]
    assert tests, f"{name}: no docstring examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = []
    for t in tests:
        runner.run(t, out=out.append)
    assert runner.failures == 0, "".join(out)
