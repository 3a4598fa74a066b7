"""Bad input, fuzzed: the manifest loader and the CLI's arguments.

Whatever the input, the outcome is success or one ManifestError/UsageError
(exit 2) with a one-line message; never another exception, never a traceback.
"""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chronctl.errors import ChronctlError
from chronctl.manifest import JOB_KEYS, SCHEDULER_KEYS, parse_manifest

pytestmark = pytest.mark.reliability

scalars = st.one_of(
    st.text(max_size=30),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.booleans(),
    st.sampled_from(
        [
            "0 2 * * *",
            "*/5 * * * *",
            "@daily",
            "61 * * * *",
            "10m",
            "-1s",
            "1.5h",
            "America/New_York",
            "Nowhere/City",
            "pkg.mod:func",
            "m:f",
            "sqlite:///x.db",
            "redis://u:p@h/0",
            "100/s",
            "0/s",
            "exponential",
            "process",
            "2026-12-24T18:00:00",
            "forbid",
            "skip",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
job_tables = st.dictionaries(st.sampled_from([*JOB_KEYS, "colour", "cronn"]), values, max_size=6)
documents = st.fixed_dictionaries(
    {},
    optional={
        "scheduler": st.dictionaries(
            st.sampled_from([*SCHEDULER_KEYS, "worker"]), values, max_size=4
        ),
        "defaults": st.dictionaries(
            st.sampled_from(["queue", "priority", "timeout", "retries"]), values, max_size=3
        ),
        "jobs": st.dictionaries(st.text(min_size=1, max_size=10), job_tables, max_size=3),
        "extra": values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_manifest_structures_load_or_fail_in_one_line(doc: dict[str, object]) -> None:
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        return  # not representable as TOML (e.g. NaN keys): nothing to test
    _check(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_loads_or_fails_in_one_line(text: str) -> None:
    _check(text)


def _check(text: str) -> None:
    try:
        parse_manifest(text, "fuzz.toml")
    except ChronctlError as exc:
        assert exc.exit_code == 2
        message = str(exc)
        assert message and "\n" not in message
        assert "Traceback" not in message


def _cli(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run chronctl's real entry point in-process (a subprocess per example is too slow)."""
    import os

    from chronctl.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["chronctl", *argv]
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return code, err.getvalue()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzzcli")
    (root / "jobs.toml").write_text('[jobs.echo]\ncommand = ["echo"]\n')
    return root


junk = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=40
)
# Values that look like options: a value is a value, whatever it looks like.
flag_like = st.sampled_from(["-v", "-vv", "--verbose", "-q", "--json", "-f", "--backend", "--"])
values_of_options = st.one_of(junk, flag_like)
# Where a word is not an option's value, a leading dash makes it an option; -v there is a
# real -v, whose traceback is wanted, so positional words never start with one.
words = junk.filter(lambda s: not s.startswith("-"))
# Global options, placed anywhere: before the subcommand, after it, or after `--`.
global_options = st.lists(
    st.sampled_from([["--json"], ["-q"], ["-f", "jobs.toml"], ["--manifest=jobs.toml"]]),
    max_size=2,
).map(lambda groups: [a for g in groups for a in g])


def _placed(argv: list[str], extra: list[str], where: int) -> list[str]:
    """Global options anywhere, except between an option and its value: there they would
    become the value, and what follows (a real `-v`) a flag whose traceback is wanted."""
    where = min(where, len(argv))
    if 0 < where < len(argv) and argv[where - 1].startswith("-"):
        where = len(argv)
    return [*argv[:where], *extra, *argv[where:]]


commands = st.one_of(
    st.tuples(
        st.sampled_from(["--args", "--kwargs", "--in", "--at", "--queue", "--key"]),
        values_of_options,
    ).map(lambda t: ["enqueue", "echo", *t]),
    words.map(lambda s: ["tasks", "show", s]),
    words.map(lambda s: ["dlq", "retry", s]),
    values_of_options.map(lambda s: ["cleanup", "--older-than", s]),
    values_of_options.map(lambda s: ["jobs", "next", "echo", "-n", s]),
    junk.map(lambda s: ["--backend", s, "queues", "list"]),
    junk.map(lambda s: ["--backend", f"redis://user:pw@{s}", "tasks", "list"]),
    words.map(lambda s: [s]),  # an unknown command
    junk.map(lambda s: ["tasks", "list", f"--{s}"]),  # an unknown option
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(commands, global_options, st.integers(0, 5))
@example(["enqueue", "echo", "--args", "-v"], [], 0)  # once printed a traceback: -v was a value
@example(["enqueue", "echo", "--queue", "--json"], ["--json"], 4)
@example(["cleanup", "--older-than", "-v"], ["--json"], 2)  # --json must not become the value
def test_cli_arguments_fail_in_one_line(
    project: Path, argv: list[str], extra: list[str], where: int
) -> None:
    code, err = _cli(_placed(argv, extra, where), project)
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err, err
    assert "unexpected error" not in err, err
    if code:
        assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err
    assert "user:pw" not in err
