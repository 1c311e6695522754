"""The shared config checks (hralign.config_checks): one rule and one message per kind of check."""

import re
from dataclasses import dataclass, field

import numpy as np
import pytest

from hralign.config_checks import (check_choice, check_fraction, check_int, check_ints, check_number,
                                   from_dict)
from hralign.errors import HRAlignError


def test_check_int_accepts_integers_in_range_and_refuses_the_rest():
    assert check_int(3, "steps", 1) == 3 and check_int(np.int64(0), "seed", 0) == 0
    for value in (0, True, 2.0, "3", None):
        with pytest.raises(HRAlignError, match=r"^`steps` should be an integer >= 1 but the value passed is "):
            check_int(value, "steps", 1)
    with pytest.raises(HRAlignError, match=r"^`--num-tasks` should be an integer in 1\.\.8 but the value passed is 9$"):
        check_int(9, "num_tasks", 1, 8, flag=True)


def test_check_ints_names_the_first_bad_attribute():
    @dataclass
    class C:
        a: int = 1
        b: int = 0

    check_ints(C(), ("a", "b"), 0)
    with pytest.raises(HRAlignError, match="^`b` should be an integer >= 1"):
        check_ints(C(), ("a", "b"), 1)


@pytest.mark.parametrize("kw, value, message", [
    (dict(lo=0, lo_open=True), 0, "a positive number"),
    (dict(lo=0), -1e-3, "a non-negative number"),
    (dict(lo=0, hi=0.5), 0.6, "a number in [0, 0.5]"),
    (dict(lo=0, hi=1, lo_open=True), 0.0, "a number in (0, 1]"),
    (dict(lo=-1, hi=1), float("nan"), "a number in [-1, 1]"),
    (dict(lo=2), 1, "a number >= 2"),
    (dict(), True, "a number"),
])
def test_check_number_says_the_interval(kw, value, message):
    with pytest.raises(HRAlignError, match=rf"^`x` should be {re.escape(message)} but the value passed is "):
        check_number(value, "x", **kw)


def test_check_number_accepts_the_closed_ends():
    assert check_number(0.5, "x", 0, 0.5) == 0.5 and check_number(0, "x", 0) == 0


def test_one_val_fraction_rule():
    assert check_fraction(0.0) == 0.0 and check_fraction(0.99) == 0.99
    for bad in (1.0, -0.1, True, "0.2"):
        with pytest.raises(HRAlignError, match=r"`val_fraction` should be a number in \[0, 1\)"):
            check_fraction(bad)
    with pytest.raises(HRAlignError, match=r"^`--val-fraction` should"):
        check_fraction(1, flag=True)


def test_every_config_follows_the_val_fraction_rule():
    from hralign.pairs.importers.pipeline import ImportConfig
    from hralign.pairs.split import SplitConfig
    from hralign.pairs.synth import SynthConfig
    from hralign.train.config import TrainConfig

    for cls in (TrainConfig, SynthConfig, ImportConfig, SplitConfig):
        cls(val_fraction=0.0)  # nothing held out is allowed everywhere
        with pytest.raises(HRAlignError, match=r"in \[0, 1\)"):
            cls(val_fraction=1.0)


def test_check_choice_lists_the_choices():
    assert check_choice("a", "kind", ("a", "b")) == "a"
    with pytest.raises(HRAlignError, match="^`--kind` should be one of a, b but the value passed is 'c'$"):
        check_choice("c", "kind", ("a", "b"), flag=True)


def test_from_dict_refuses_unknown_keys_and_non_objects_naming_the_source():
    @dataclass
    class Cfg:
        a: int = 1
        b: str = field(default="x")

    assert from_dict(Cfg, {"a": 2}, "run.json") == Cfg(a=2)
    with pytest.raises(HRAlignError, match=r"^run\.json: unknown Cfg keys \['c'\]; known keys are \['a', 'b'\]$"):
        from_dict(Cfg, {"a": 2, "c": 3}, "run.json")
    with pytest.raises(HRAlignError, match=r"^lam\.json: Cfg should be a JSON object but is list$"):
        from_dict(Cfg, [1], "lam.json")


def test_the_configs_use_the_shared_from_dict():
    from hralign.lam.config import LAMConfig
    from hralign.policy.config import BCConfig
    from hralign.policy.gr1.config import GR1Config
    from hralign.pretrain.config import PretrainConfig

    for cls in (LAMConfig, BCConfig, GR1Config, PretrainConfig):
        with pytest.raises(HRAlignError, match=rf"^saved\.json: unknown {cls.__name__} keys \['bogus'\]"):
            cls.from_dict({"bogus": 1}, "saved.json")
