"""Click options generated from config dataclasses (hralign.cli.options): the mapping itself, and every
command of `hralign` checked against the configs it was built from; renamed options; the commands of
README.md and docs/*.md parse as written."""

import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import run_cli

from hralign.cli.main import cli
from hralign.cli.options import (command_configs, config_kwargs, dataclass_options, field_kind, parse_value,
                                 renamed_option)
from hralign.errors import HRAlignError


@dataclass
class _Cfg:
    tasks: tuple[str, ...] | str = field(default=("a", "b"), metadata={"help": "Tasks, comma-separated."})
    seed: int = field(default=3, metadata={"help": "Seed."})
    rate: float = field(default=0.5, metadata={"help": "Rate."})
    flag: bool = field(default=False, metadata={"help": "A switch."})


def _command(**kw):
    @click.command()
    @dataclass_options(_Cfg, **kw)
    def cmd(**options):
        click.echo(repr(sorted(options.items())))

    return cmd


def test_every_field_becomes_an_option_with_type_default_and_help():
    r = CliRunner().invoke(_command(), ["--seed", "7", "--flag"])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == repr([("flag", True), ("rate", 0.5), ("seed", 7), ("tasks", "a,b")])
    assert "Tasks, comma-separated." in CliRunner().invoke(_command(), ["--help"]).output
    assert CliRunner().invoke(_command(), ["--seed", "x"]).exit_code == 2


def test_only_and_rename_select_fields_and_map_back_to_the_config():
    rename = {"seed": "collect_seed"}
    cmd = _command(only=("tasks", "seed"), rename=rename)
    r = CliRunner().invoke(cmd, ["--collect-seed", "9", "--tasks", "x,y"])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == repr([("collect_seed", 9), ("tasks", "x,y")])
    assert CliRunner().invoke(cmd, ["--seed", "1"]).exit_code == 2  # renamed away
    assert config_kwargs(_Cfg, {"collect_seed": 9, "tasks": "x,y", "other": 1}, rename) == {"tasks": "x,y", "seed": 9}


# -- every command of `hralign`: options from configs match the configs -----------------------------
ROOT = Path(__file__).resolve().parents[1]
_CLICK = {int: click.INT, float: click.FLOAT, str: click.STRING}


def _walk(group: click.Group, path: tuple[str, ...] = ("hralign",)):
    """(command path, command) of every leaf command under ``group`` (lazy groups and importers included)."""
    ctx = click.Context(group, info_name=path[-1])
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, path + (name,))
        else:
            yield " ".join(path + (name,)), cmd


def option_mismatches(cmd: click.Command) -> list[str]:
    """Where ``cmd``'s options disagree with the configs it was built from: a field's option missing, or
    with another type, default or help; or a hand-written option whose dest is a field of one of those
    configs without that field's help."""
    params = {p.name: p for p in cmd.params}
    used = command_configs(cmd)
    generated = {dest for u in used for dest in u.dests.values()}
    problems = []
    for u in used:
        for f in dataclasses.fields(u.cls):
            help_text = f.metadata.get("help", "")
            if f.name not in u.dests:  # not generated: a hand-written option of that name must carry its help
                p = params.get(f.name)
                if p is not None and p.name not in generated and help_text not in (p.help or ""):
                    problems.append(f"--{f.name}: hand-written, help {p.help!r} is not {u.cls.__name__}'s {help_text!r}")
                continue
            p = params.get(u.dests[f.name])
            if p is None:
                problems.append(f"{u.cls.__name__}.{f.name}: no option")
                continue
            if not (p.help or "").startswith(u.help_prefix + help_text):
                problems.append(f"{u.cls.__name__}.{f.name}: help {p.help!r}")
            typ, kind = field_kind(f.type)
            if kind == "bool":
                if not (p.is_flag and p.secondary_opts == ["--no-" + p.opts[0][2:]]):
                    problems.append(f"{u.cls.__name__}.{f.name}: not a --x/--no-x switch")
            elif p.type is not _CLICK[typ]:
                problems.append(f"{u.cls.__name__}.{f.name}: type {p.type!r}, field {f.type!r}")
            default = None if f.default is dataclasses.MISSING else f.default
            if isinstance(default, (tuple, list)):
                default = ",".join(map(str, default))
            if not (p.default == default or p.default is None and (u.default_none or p.required)):
                problems.append(f"{u.cls.__name__}.{f.name}: default {p.default!r}, field {default!r}")
    return problems


COMMANDS = dict(_walk(cli))


def test_the_walk_finds_every_command_group_and_the_configs_on_them():
    groups = {name.split()[1] for name in COMMANDS}
    assert groups >= {"pairs", "encoders", "adapters", "export", "pretrain", "adapt", "analyze", "lam", "policy",
                      "sim", "bench"}
    with_configs = [n for n, c in COMMANDS.items() if command_configs(c)]
    assert len(with_configs) >= 20 and "hralign pairs synth" in with_configs and "hralign adapt" in with_configs


@pytest.mark.parametrize("name", sorted(n for n, c in COMMANDS.items() if command_configs(c)))
def test_options_of_every_command_match_its_configs(name):
    assert option_mismatches(COMMANDS[name]) == []


def test_a_drifting_option_is_found():
    @click.command()
    @dataclass_options(_Cfg, exclude=("seed",))
    @click.option("--seed", type=int, default=3, help="Seed of something else.")  # hand copy, help drifted
    def drifted(**options):
        pass

    @click.command()
    @dataclass_options(_Cfg)
    def fine(**options):
        pass

    assert option_mismatches(fine) == []
    assert option_mismatches(drifted) == ["--seed: hand-written, help 'Seed of something else.' is not _Cfg's 'Seed.'"]
    fine.params[1].help = "Changed."  # --seed's help no longer the field's
    fine.params[0].default = "x"  # --tasks' default no longer the field's
    assert option_mismatches(fine) == ["_Cfg.tasks: default 'x', field 'a,b'", "_Cfg.seed: help 'Changed.'"]


def test_default_none_options_mean_the_configs_default():
    cmd = _command(default_none=True, help_prefix="[x] ")
    r = CliRunner().invoke(cmd, [])
    assert r.exit_code == 0 and r.output.strip() == repr([("flag", None), ("rate", None), ("seed", None), ("tasks", None)])
    text = " ".join(CliRunner().invoke(cmd, ["--help"]).output.split())
    assert "[x] Seed. [default 3]" in text and "[x] Tasks, comma-separated. [default a,b]" in text
    assert option_mismatches(cmd) == []


def test_parse_value_uses_the_option_type_mapping():
    assert parse_value(_Cfg, "seed", "7") == 7 and parse_value(_Cfg, "rate", "0.25") == 0.25
    assert parse_value(_Cfg, "flag", "true") is True and parse_value(_Cfg, "flag", "No") is False
    assert parse_value(_Cfg, "tasks", "a,b,c") == "a,b,c"
    for key, text, msg in (("seed", "x", "--set seed='x': expected an integer"),
                           ("rate", "fast", "--set rate='fast': expected a number"),
                           ("flag", "maybe", "--set flag='maybe': expected true or false"),
                           ("nope", "1", "--set nope: not a field of _Cfg")):
        with pytest.raises(HRAlignError, match=re.escape(msg)):
            parse_value(_Cfg, key, text)


def test_a_renamed_option_is_refused_naming_the_new_one():
    @click.command()
    @click.option("--val-fraction", type=float, default=0.2)
    @renamed_option("--val", "--val-fraction")
    def cmd(val_fraction):
        click.echo(val_fraction)

    assert CliRunner().invoke(cmd, ["--val-fraction", "0.3"]).output.strip() == "0.3"
    r = CliRunner().invoke(cmd, ["--val", "0.3"])
    assert isinstance(r.exception, HRAlignError) and str(r.exception) == ("`--val` was renamed: use `--val-fraction`; "
                                                                    "pass --val-fraction 0.3")
    assert "--val " not in CliRunner().invoke(cmd, ["--help"]).output  # hidden
    for args, new in ((["pairs", "split", "x.h5", "--val", "0.3", "--out", "y.h5"], "--val-fraction"),
                      (["pairs", "synth", "--out", "y.h5", "--tasks", "3"], "--num-tasks"),
                      (["adapt", "--pairs", "x.h5", "--out", "r", "--adapter", "lora"], "--method")):
        code, _, err = run_cli(*args)
        assert code == 2 and f"use `{new}`" in err and len(err.strip().splitlines()) == 1, err


# -- the commands in README.md and docs/*.md parse as written ---------------------------------------
def doc_commands(text: str) -> list[str]:
    """The arguments of every complete ``hralign ...`` command in the fenced code blocks of ``text``
    (continuation lines joined, environment prefixes and comments dropped; synopsis lines with
    ``[...]``, ``|``, ``...`` or ``$VAR`` placeholders skipped)."""
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"^(\w+=\S+\s+)+", "", line.split(" #")[0].strip())
            m = re.match(r"^(?:hralign|(?:torchrun|accelerate launch) .*?-m hralign\.cli\.main)\s+(.*)$", line)
            if m and not re.search(r"\[|\||\.\.\.|\$", m.group(1)):
                out.append(m.group(1))
    return out


def parse_command(args: list[str]) -> click.Context:
    """Parse ``hralign ARGS`` down to its command without running it (unknown or renamed options raise)."""
    cmd: click.Command = cli
    ctx = click.Context(cli, info_name="hralign")
    while isinstance(cmd, click.Group):
        args = [a for a in args if a != "--debug"]
        name, args = args[0], args[1:]
        sub = cmd.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"no command {name!r}")
        ctx, cmd = click.Context(sub, info_name=name, parent=ctx), sub
    return cmd.make_context(ctx.info_name, list(args), parent=ctx.parent)


DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_commands_of_the_readme_and_docs_parse(doc):
    failures = []
    for command in doc_commands(doc.read_text(encoding="utf-8")):
        try:
            parse_command(shlex.split(command))
        except (click.ClickException, HRAlignError) as e:
            failures.append(f"hralign {command}: {getattr(e, 'message', e)}")
    assert failures == []


def test_an_old_spelling_in_the_docs_would_fail():
    text = "```\nhralign pairs split d.h5 --val 0.25 --out e.h5\nhralign adapt --pairs d.h5 --adapter lora --out r\n```\n"
    commands = doc_commands(text)
    assert len(commands) == 2
    for command, new in zip(commands, ("--val-fraction", "--method")):
        with pytest.raises(HRAlignError, match=f"use `{new}`"):
            parse_command(shlex.split(command))
    assert len(doc_commands((ROOT / "README.md").read_text(encoding="utf-8"))) >= 6


def test_the_demo_script_commands_parse():
    text = re.sub(r"\\\n\s*", " ", (ROOT / "scripts" / "demo.sh").read_text(encoding="utf-8"))
    steps = [shlex.split(m.replace('"$out', '"demo')) for m in re.findall(r"^step \S+\s+(.*)$", text, re.M)]
    assert len(steps) >= 6
    for args in steps:
        parse_command(args)
