"""Click options generated from config dataclasses (hralign.cli.options)."""

from dataclasses import dataclass, field

import click
from click.testing import CliRunner

from hralign.cli.options import config_kwargs, dataclass_options


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
