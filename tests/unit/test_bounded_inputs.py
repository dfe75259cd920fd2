"""Bounded inputs (issue "Status that never lies", finding 8): what cannot be meant is refused
with exit 2 and one line, before anything is read, applied or waited for.

Before: ``--lock-timeout inf|nan|1e300`` raised an OverflowError or waited for ever,
``wait-for-schema --timeout nan`` and ``apply --timeout nan`` looped, ``apply -f`` read a
60 MB file whole and crashed on a YAML bomb, duplicate keys were merged silently, and
``--to 24`` resolved although a partial id needs 4 characters.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.alembic_projects import Rev, make_project
from umt_migrations.argtypes import MAX_SECONDS
from umt_migrations.cli import main
from umt_migrations.errors import INVALID_SPEC, REVISION_NOT_FOUND, MigrationError
from umt_migrations.graph import MIN_PARTIAL_ID, resolve
from umt_migrations.waiter import MAX_MANIFEST_BYTES, MAX_YAML_ALIASES, MAX_YAML_DEPTH

pytestmark = pytest.mark.unit

MANIFEST = """\
apiVersion: migrations.umt.dev/v1alpha1
kind: SchemaMigration
metadata:
  name: umt-schema
spec:
  targetRevision: head
  database:
    urlSecretRef: {name: umt-db}
"""

DURATIONS: list[tuple[str, ...]] = [
    ("migrate", "--to", "head", "--lock-timeout"),
    ("wait-for-schema", "--timeout"),
    ("wait-for-schema", "--interval"),
    ("apply", "-f", "-", "--timeout"),
    ("apply", "-f", "-", "--operator-grace"),
]
#: The runner's options (their own maxima; tests/integration/test_migrate_runner.py): the
#: same refusals, by the same argument types.
RUNNER_DURATIONS: list[tuple[str, ...]] = [("migrate", "--to", "head", option) for option in
    ("--step-lock-timeout", "--statement-timeout", "--connect-timeout")]
ABSURD = ["inf", "-inf", "nan", "NaN", "1e300", "-1", str(MAX_SECONDS + 1), "soon"]


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``argv`` exits 2 with exactly one line on stderr, which is returned."""
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize("value", ABSURD)
@pytest.mark.parametrize("option", DURATIONS + RUNNER_DURATIONS, ids=lambda o: f"{o[0]} {o[-1]}")
def test_absurd_durations_are_refused_by_the_parser(
        capsys: pytest.CaptureFixture[str], option: tuple[str, ...], value: str) -> None:
    line = refused(capsys, *option, value)
    assert f"argument {option[-1]}:" in line and "error:" in line


@pytest.mark.parametrize("option", DURATIONS, ids=lambda o: f"{o[0]} {o[-1]}")
def test_the_documented_maximum_itself_is_accepted(option: tuple[str, ...]) -> None:
    from umt_migrations.cli import build_parser

    args = build_parser().parse_args([*option, str(MAX_SECONDS)])
    assert MAX_SECONDS in vars(args).values()


def test_an_interval_that_would_poll_in_a_tight_loop_is_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert "at least 0.1" in refused(capsys, "wait-for-schema", "--interval", "0.001")


# --- apply -f ----------------------------------------------------------------------------------


def apply_file(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    """``apply -f path`` against no cluster: a refusal comes before any API call."""
    code = main(["apply", "-f", str(path), "--kubeconfig", str(path.parent / "none")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    return err.strip()


def test_a_manifest_above_the_size_limit_is_not_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(MANIFEST + "#" * MAX_MANIFEST_BYTES)
    assert f"larger than {MAX_MANIFEST_BYTES // 1024} KiB" in apply_file(capsys, big)


def test_standard_input_above_the_size_limit_is_not_read(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"x" * (10 * MAX_MANIFEST_BYTES)))
    monkeypatch.setattr("sys.stdin", stdin)
    assert main(["apply", "-f", "-"]) == 2
    assert "<stdin> is larger than" in capsys.readouterr().err
    assert stdin.buffer.tell() <= MAX_MANIFEST_BYTES + 1 + 8192  # read no further than that


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in itertools.pairwise("abcdefghijklmnop"[:levels]):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return MANIFEST.replace("  targetRevision: head\n", "  targetRevision: head\n  job:\n"
                            "    podAnnotations:\n" + "".join(
                                f"      {line}\n" for line in lines))


def test_a_yaml_bomb_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    assert f"more than {MAX_YAML_ALIASES} YAML aliases" in apply_file(capsys, bomb)


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    from umt_migrations.waiter import parse_manifest

    text = MANIFEST.replace("spec:\n", "x-labels: &labels {team: db}\nspec:\n") + \
        "  job:\n    podLabels: *labels\n"
    assert parse_manifest(text).body["spec"]["job"]["podLabels"] == {"team": "db"}


def test_deep_nesting_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text(MANIFEST + "  x: " + "[" * 10000 + "]" * 10000 + "\n")
    assert f"deeper than {MAX_YAML_DEPTH} levels" in apply_file(capsys, deep)


@pytest.mark.parametrize(("text", "key", "line"), [
    (MANIFEST + "spec: {targetRevision: base}\n", "spec", 9),
    (MANIFEST.replace("  targetRevision: head\n", "  targetRevision: head\n"
                      "  targetRevision: base\n"), "targetRevision", 7),
    ('{"apiVersion": "migrations.umt.dev/v1alpha1", "kind": "SchemaMigration",'
     ' "metadata": {"name": "a", "name": "b"}, "spec": {}}', "name", 1),
])
def test_duplicate_keys_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    text: str, key: str, line: int) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    assert f"key '{key}' appears twice in one mapping (line {line})" in apply_file(capsys, path)


def test_merge_keys_may_be_overridden() -> None:
    """``<<: *base`` then the same key: YAML's merge, not a duplicate."""
    from umt_migrations.waiter import parse_manifest

    text = MANIFEST.replace("spec:\n", "x-base: &base {targetRevision: base}\nspec:\n  <<: *base\n")
    assert parse_manifest(text).body["spec"]["targetRevision"] == "head"


# --- partial revision ids ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> ScriptDirectory:
    revs = [Rev("240cfb931a0a", None), Rev("7b15a05d0cb1", "240cfb931a0a"),
            Rev("ab", "7b15a05d0cb1", branch_labels=("db",))]
    ini = make_project(tmp_path_factory.mktemp("partial"), revs)
    return ScriptDirectory.from_config(Config(str(ini)))


@pytest.mark.parametrize("target", ["2", "24", "240", "db@24"])
def test_a_partial_id_shorter_than_4_characters_is_refused(
        script: ScriptDirectory, target: str) -> None:
    with pytest.raises(MigrationError) as exc:
        resolve(script, target)
    assert exc.value.reason == INVALID_SPEC  # exit 2
    assert f"at least {MIN_PARTIAL_ID} characters" in exc.value.message


@pytest.mark.parametrize(("target", "expected"), [
    ("240c", "240cfb931a0a"),  # a prefix of 4 characters, as the docs say
    ("ab", "ab"),  # a whole id may be short
    ("db", "ab"),  # so may a branch label
    ("db@head", "ab"),
])
def test_whole_ids_labels_and_long_prefixes_resolve(
        script: ScriptDirectory, target: str, expected: str) -> None:
    assert resolve(script, target) == (expected,)


def test_an_unknown_short_id_is_still_not_found(script: ScriptDirectory) -> None:
    with pytest.raises(MigrationError) as exc:
        resolve(script, "zz")
    assert exc.value.reason == REVISION_NOT_FOUND
