"""A policy kind registered from one file outside the package runs through every command.

``tests/fixtures/toy_policy.py`` defines a config, a policy and one ``register_policy`` call; it is
loaded the way a user of a pip-installed hralign would (``HRALIGN_PLUGINS=toy_policy``, or the
``hralign.policies`` entry-point group of an installed distribution) and nothing in hralign names it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

from hralign.errors import HRAlignError
from hralign.policy import POLICY_KINDS, PolicyKind, get_policy_kind, load_policy, make_policy, register_policy
from hralign.policy import registry
from hralign.sim.env import metaworld_available

pytestmark = pytest.mark.filterwarnings("ignore::hralign.encoders.RandomInitWarning")
FIXTURES = Path(__file__).parent / "fixtures"
_MW, _WHY = metaworld_available()


@pytest.fixture
def toy(monkeypatch):
    """The toy kind, loaded through ``HRALIGN_PLUGINS`` as the commands do; unregistered afterwards."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setenv(registry.PLUGINS_ENV, "toy_policy")
    assert "toy" not in POLICY_KINDS
    yield
    POLICY_KINDS.pop("toy", None)
    registry._loaded.clear()
    sys.modules.pop("toy_policy", None)


def _heldout_mse(policy_dir: Path, pairs_path: Path) -> float:
    """The held-out action MSE recomputed by hand from the saved policy, its recorded encoder and split."""
    from hralign.pairs import PairsFile
    from hralign.policy.data import action_table, batch_of
    from hralign.policy.features import features_by_clip
    from hralign.policy.io import recorded_source

    policy, meta = load_policy(policy_dir)
    pairs = PairsFile(pairs_path)
    held = np.asarray(meta["data"]["heldout_clips"]["robot"], dtype=np.int64)
    enc = recorded_source(meta, None, "test").robot_encoder()
    table = action_table(pairs, features_by_clip(enc, pairs, "robot", held), held, 1, True)
    pred = policy.select_action(batch_of(table, None, None))
    return float(((pred - table["action"]) ** 2).mean())


def test_toy_kind_trains_and_evaluates_through_policy_train_and_eval(toy, tiny_pairs, tmp_path):
    out = tmp_path / "toy"
    code, stdout, err = run_cli("policy", "train", "--kind", "toy", "--toy-scale", "0.5", "--pairs", str(tiny_pairs),
                                "--encoder", "r3m-resnet18", "--image-size", "32", "--steps", "30", "--batch-size", "16",
                                "--no-progress", "--out", str(out))
    assert code == 0, err
    assert "toy policy" in stdout
    meta = json.loads((out / "config.json").read_text())
    assert meta["kind"] == "toy" and meta["config"] == {"proprio": True, "toy_scale": 0.5}
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 30 and lines[-1]["action_loss"] < lines[0]["action_loss"]  # it learned
    code, stdout, err = run_cli("policy", "eval", "--pairs", str(tiny_pairs), "--policy", str(out), "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert res["kind"] == "toy" and "latent" not in res
    assert res["action"]["mse_mean"] == pytest.approx(_heldout_mse(out, tiny_pairs), rel=1e-5)
    # the toy's options are its own: refused for another kind, naming the one that has them
    code, _, err = run_cli("policy", "train", "--pairs", str(tiny_pairs), "--encoder", "r3m-resnet18",
                           "--toy-scale", "2", "--out", str(tmp_path / "bc"))
    assert code == 2 and "--toy-scale only apply to --kind toy" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("policy", "train", "--kind", "toy", "--toy-scale", "-1", "--pairs", str(tiny_pairs),
                           "--encoder", "r3m-resnet18", "--out", str(tmp_path / "bad"))
    assert code == 2 and "`toy_scale` should be a positive number" in err


@pytest.mark.skipif(not _MW, reason=f"[sim] extra not usable: {_WHY}")
def test_toy_kind_runs_closed_loop_in_sim_eval(toy, tmp_path, push_demos):
    pairs = push_demos
    out = tmp_path / "ev"
    code, stdout, err = run_cli("sim", "eval", "--pairs", str(pairs), "--encoder", "r3m-resnet18",
                                "--encoder-image-size", "32", "--name", "toy", "--no-proprio-row", "--kind", "toy",
                                "--toy-scale", "0.25", "--protocol", "robot", "--rollouts", "1", "--seeds", "1",
                                "--steps", "10", "--batch-size", "16", "--max-steps", "8", "--envs", "1",
                                "--out", str(out), "--json")
    assert code == 0, err
    row = json.loads(stdout)["variants"]["toy"]
    assert row["kind"] == "toy" and row["config"]["toy_scale"] == 0.25
    (seed,) = row["per_seed"]
    saved, _ = load_policy(out / "toy" / "seed0" / "policy")
    assert type(saved).__name__ == "ToyPolicy" and saved.config.toy_scale == 0.25
    # demo_mse is the saved policy's action error on its demo frames (the robot demos under `robot`)
    from hralign.pairs import PairsFile
    from hralign.policy.demos import demo_table
    from hralign.policy.features import features_by_clip
    from hralign.policy.io import EncoderSource

    pf = PairsFile(pairs)
    clips = np.arange(pf.num_clips("robot"))
    feats = features_by_clip(EncoderSource("r3m-resnet18", image_size=32).robot_encoder(), pf, "robot", clips)
    table = demo_table(pf, {"robot": feats}, {"robot": clips})
    want = float(((saved.select_action(table) - table["action"]) ** 2).mean())
    assert seed["demo_mse"] == pytest.approx(want, rel=1e-4)
    assert seed["per_goal"]["push"] in ([0], [1]) and seed["success"] == seed["per_goal"]["push"][0]


def test_registry_refuses_duplicates_and_incomplete_kinds_and_lists_known_names():
    bc = get_policy_kind("bc")
    assert register_policy(bc) is bc  # the same registration again is harmless
    with pytest.raises(HRAlignError, match="'bc' is already registered"):
        register_policy(PolicyKind("bc", bc.config_class, get_policy_kind("gr1").policy_class))
    with pytest.raises(HRAlignError, match="has no `from_dims`"):
        PolicyKind("nope", bc.config_class, torch.nn.Linear)
    with pytest.raises(HRAlignError, match="policy kind 'nope' unknown; known: bc, latent, gr1"):
        get_policy_kind("nope")
    with pytest.raises(HRAlignError, match="no policy kind is registered for config class dict"):
        make_policy({}, {})


def test_plugin_module_that_cannot_be_imported_is_one_line(monkeypatch):
    monkeypatch.setenv(registry.PLUGINS_ENV, "no_such_hralign_plugin")
    with pytest.raises(HRAlignError, match="HRALIGN_PLUGINS: cannot import no_such_hralign_plugin"):
        registry.load_plugins()


def test_entry_point_of_an_installed_distribution_registers_its_kind(toy, monkeypatch):
    """A pip-installed plug-in declares ``[options.entry_points] hralign.policies = toy = toy_policy``."""
    from importlib.metadata import EntryPoint

    monkeypatch.delenv(registry.PLUGINS_ENV)
    ep = EntryPoint(name="toy", value="toy_policy", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == registry.ENTRY_POINT_GROUP else [])
    assert "toy" not in POLICY_KINDS
    kind = get_policy_kind("toy")  # an unknown name loads the plug-ins first
    assert kind.config_class.__name__ == "ToyConfig" and registry.load_plugins() == []  # each loads once
    policy = make_policy(kind.config_class(toy_scale=2.0), {"feature_dim": 3, "action_dim": 2, "state_dim": 1})
    assert policy.name == "toy" and policy.linear.in_features == 4
