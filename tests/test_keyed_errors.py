"""Every traceback turned into a keyed error (issue 15 items 12-17) and the CLI conventions of issue 12: exit 0 ok,
1 run failure, 2 bad input with the key or file named and nothing written; --version; --quiet prints the path;
help on every option; overrides as a dict; a run folder records the resolved scenario and its provenance."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from defistress.protocols.base import Revert
from defistress.scenarios.loader import load
from defistress.scenarios.registry import builtin_path
from defistress.sim.cli.app import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
BOOKS = ROOT / "scenarios" / "portfolios" / "example_books.toml"
S = ["--set", "agents.borrowers.accounts=300", "--set", "run.duration=1h", "--set", "shocks.0.at=30m"]
S += ["--set", "shocks.1.at=1h", "--set", "shocks.2.at=1h"]


def run(*args: str):
    return runner.invoke(app, list(args))


def assert_bad_input(r, *words: str) -> None:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    for w in words:
        assert w in r.stderr, (w, r.stderr)


# --- item 12: files that are not UTF-8 ----------------------------------------------------------------
@pytest.mark.parametrize(
    "content",
    [
        bytes(range(256)) * 4,
        builtin_path("calm").read_text().replace("# A quiet", "# Caf\xe9: a quiet").encode("latin-1"),
    ],
    ids=["random-bytes", "latin-1"],
)
def test_a_scenario_that_is_not_utf8_is_named(tmp_path, content):
    f = tmp_path / "s.toml"
    f.write_bytes(content)
    for cmd in ("validate", "run"):
        r = run(cmd, str(f), "--out", str(tmp_path / "o")) if cmd == "run" else run(cmd, str(f))
        assert_bad_input(r, str(f), "not UTF-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]


@pytest.mark.parametrize("kind", ["binary", "latin-1", "empty"])
def test_margin_files_that_are_binary_latin1_or_empty_are_named(tmp_path, kind):
    data = {"binary": bytes(range(256)), "latin-1": "[market]\n# prix \xe9lev\xe9\n".encode("latin-1"), "empty": b""}
    f = tmp_path / "book.toml"
    f.write_bytes(data[kind])
    r = run("margin", "compare", str(f), "--out", str(tmp_path / "out"))
    assert_bad_input(r, str(f))
    c = tmp_path / "prices.csv"
    c.write_bytes(data[kind])
    r = run("margin", "backtest", "--path", str(c), "--symbol", "ETH-USDT", "--out", str(tmp_path / "out"))
    assert_bad_input(r, str(c))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("prefix", [b"# caf\xe9\n", bytes(range(128, 256))], ids=["latin-1-comment", "random-bytes"])
def test_a_replay_file_that_is_not_utf8_is_named(tmp_path, prefix):
    data = (ROOT / "scenarios/historic/data/01b_black_thursday_2020-03-12_ETH_10min.csv").read_bytes()
    bad = tmp_path / "eth.csv"
    bad.write_bytes(prefix + data)
    r = run("validate", "black-thursday-lending", "--set", f'market.replay.file="{bad}"')
    assert_bad_input(r, str(bad), "not UTF-8")


# --- item 13: OverflowError and IndexError inputs -------------------------------------------------------
@pytest.mark.parametrize(
    "item, key",
    [
        ("shocks.1.until=inf", "shocks.1.until"),
        ("agents.borrowers.reaction_delay=inf", "agents.borrowers.reaction_delay"),
        ("run.duration=5s", "run.duration"),
    ],
)
def test_overflow_and_index_errors_are_keyed(tmp_path, item, key):
    r = run("run", "eth-crash", *S, "--set", item, "--out", str(tmp_path / "o"), "--quiet")
    assert_bad_input(r, key)
    assert not (tmp_path / "o").exists()


def test_blocks_longer_than_the_run_are_keyed(tmp_path):
    r = run("run", "calm", "--set", "run.duration=30m", "--set", "run.block_seconds=3600", "--out", str(tmp_path / "o"))
    assert_bad_input(r, "run.duration: 1800 s must hold at least one block of run.block_seconds (3600 s)")
    assert not (tmp_path / "o").exists()


# --- item 14: validate catches what run would refuse ----------------------------------------------------
@pytest.mark.parametrize("low", ["0.5", "0", "-1"])
def test_validate_refuses_borrowers_that_cannot_start(low):
    r = run("validate", "eth-crash", "--set", f"agents.borrowers.health_factor.min={low}")
    assert_bad_input(r, "agents.borrowers.health_factor", ">= 1")


def test_a_set_up_failure_names_its_table_in_validate_and_run(tmp_path, monkeypatch):
    """Whatever a builder refuses at set-up (here a revert) is bad input naming the table, in both commands."""
    from defistress.sim.engine import build

    def refuse(model, spec):
        raise Revert("lend: borrow would exceed health factor 1 for 3 account(s)")

    monkeypatch.setitem(build.AGENT_BUILDERS, "borrowers", refuse)
    for argv in (["validate", "eth-crash"], ["run", "eth-crash", *S, "--out", str(tmp_path / "o")]):
        r = run(*argv)
        assert_bad_input(r, "agents.borrowers: cannot be set up", "health factor 1")
    assert not (tmp_path / "o").exists()


def test_validate_sets_the_scenario_up():
    r = run("validate", "eth-crash", *S)
    assert r.exit_code == 0 and r.stdout.startswith("ok eth-crash")


# --- item 15: compare --seeds 0 -----------------------------------------------------------------------------
def test_compare_with_no_seed_is_refused_naming_the_option(tmp_path):
    r = run("compare", "inter-protocol-pm", "--seeds", "0", "--out", str(tmp_path / "c"))
    assert r.exit_code == 2 and "--seeds" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "c").exists()


# --- item 17: messages that name their key ------------------------------------------------------------------
@pytest.mark.parametrize(
    "item, key, words",
    [
        ("agents.liquidator.capital_usd=inf", "agents.liquidator.capital_usd", "not a finite number"),
        ("shocks.1.until=nan", "shocks.1.until", "not a finite number"),
        ("shocks.1.until=1e308", "shocks.1.until", "ten years"),
    ],
)
def test_messages_name_their_key(tmp_path, item, key, words):
    r = run("run", "eth-crash", *S, "--set", item, "--out", str(tmp_path / "o"), "--quiet")
    assert_bad_input(r, key, words)


def test_a_negative_seed_names_the_option(tmp_path):
    for cmd in (["run", "eth-crash", *S, "--out", str(tmp_path / "o")], ["validate", "eth-crash"]):
        r = run(*cmd, "--seed", "-1")
        assert r.exit_code == 2 and "--seed" in r.output and "Traceback" not in r.output


def test_out_dot_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("run", "eth-crash", *S, "--out", ".", "--quiet")
    assert_bad_input(r, "--out '.'", "name a new folder")
    assert "empty name" not in r.stderr and list(tmp_path.iterdir()) == []


# --- CLI conventions (issue 12) -----------------------------------------------------------------------------
def test_version():
    from defistress import __version__

    r = run("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"defistress {__version__}"


def test_the_exit_codes_are_documented_in_help():
    r = run("--help")
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    assert "Exit codes: 0 success; 1 the run failed" in text and "2 bad input" in text


def _commands(group, prefix: str = ""):
    """(name, command) of every leaf command of a typer (click) group, sub-groups included."""
    ctx = type(group).context_class(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if hasattr(cmd, "list_commands"):
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


def test_every_option_of_every_command_has_help_text():
    root = typer.main.get_command(app)
    missing = [
        f"{name} {p.opts[0]}"
        for name, cmd in _commands(root)
        for p in cmd.params
        if p.param_type_name == "option" and not (p.help or "").strip()
    ]
    assert len(list(_commands(root))) >= 9  # run, validate, list, schema, sweep, graph, compare, margin x2
    assert missing == []


def test_quiet_still_prints_the_run_folder(tmp_path):
    out = tmp_path / "r"
    r = run("run", "calm", "--set", "run.duration=1h", "--out", str(out), "--quiet", "--no-report")
    assert r.exit_code == 0 and r.stdout == f"{out}\n"


def test_an_unexpected_error_is_one_line_and_exit_1(tmp_path, monkeypatch):
    import defistress.sim.engine.model as model_module

    def broken(self, progress=None):
        raise KeyError("a bug")

    monkeypatch.setattr(model_module.StressModel, "run", broken)
    r = run("run", "eth-crash", *S, "--out", str(tmp_path / "o"), "--quiet")
    assert r.exit_code == 1 and "internal error (KeyError" in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_the_python_api_takes_overrides_as_a_dict():
    from defistress import run_scenario

    a = run_scenario("calm", 1, {"run.duration": "1h", "agents.borrowers.accounts": 200})
    b = run_scenario("calm", 1, ['run.duration="1h"', "agents.borrowers.accounts=200"])
    assert a.manifest["scenario_sha256"] == b.manifest["scenario_sha256"]
    assert a.manifest["overrides"] == b.manifest["overrides"] == ['run.duration="1h"', "agents.borrowers.accounts=200"]
    assert a.timeseries.equals(b.timeseries)


# --- outputs a risk committee can read (issue 12, first bullet) ---------------------------------------------
def test_a_run_folder_holds_the_resolved_scenario_the_overrides_and_the_provenance(tmp_path):
    out = tmp_path / "r"
    r = run("run", "eth-crash", *S, "--out", str(out), "--quiet", "--no-report")
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    man = summary["manifest"]
    overrides = [s for s in S if s != "--set"]
    assert man["overrides"] == [o.replace("=1h", '="1h"').replace("=30m", '="30m"') for o in overrides]
    assert (out / "overrides.txt").read_text().splitlines() == man["overrides"]
    resolved = load(out / "scenario.toml")
    assert resolved.hash == man["scenario_sha256"]  # the resolved file is the scenario that ran
    assert tomllib.loads((out / "scenario.toml").read_text())["agents"][0]["accounts"] == 300
    from defistress import __version__

    assert man["package_version"] == __version__
    commit = man["git_commit"]
    assert commit is None or (len(commit) == 40 and int(commit, 16) >= 0)
    assert (ROOT / ".git").exists() is (commit is not None)
