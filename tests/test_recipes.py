"""Recipes (vsc_cli/trainers/recipes.py): the settings a recipe fills in for a run, and how `vsc train`, `vsc
experiment` and the Python API resolve a run's config from a recipe and the settings given."""
from click.testing import CliRunner

from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig

from conftest import ROOT


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_recipe_settings_scale_with_the_run():
    from vsc_cli.trainers.recipes import recipe_settings, resolve

    d = recipe_settings("default-1", 20_000, 0.01)
    assert d == {"spike": "sigmoid", "pretrain": 8_000, "pretrain_ramp": 4_000, "alpha_start": 0.1,
                 "alpha_hold": 8_000, "alpha_anneal": 6_000, "prior": "spike-slab", "rate_weight": 0.0,
                 "rate_target": None, "centre": False, "kl_warmup": 0, "encoder_scale": None, "c_ramp": None,
                 "logvar_init": None, "spike_entropy": 0.0, "gate_magnitude": 0.0,
                 "gate_gradient": False}
    # default-2: default-1 plus the aggregate spike-rate term and the centred input; default-3 its settings
    assert recipe_settings("default-3", 20_000, 0.01) == recipe_settings("default-2", 20_000, 0.01) == \
        {**d, "rate_weight": 3.0, "rate_target": 0.05, "centre": True}
    # default-4 (today's default): default-3's phases at 5,000 iterations, whatever the run's length, the
    # decoder's variance started at the data's
    d4 = {**recipe_settings("default-3", 5_000, 0.01), "c_ramp": 5_000, "logvar_init": "data"}
    assert recipe_settings("default", 20_000, 0.01) == recipe_settings("default-4", 20_000, 0.01) == d4
    assert recipe_settings("default-4", 50_000, 0.01) == d4
    assert recipe_settings("default-4", 5_000, 0.01) == d4
    # default-5: default-4 with the gate (its gradient kept) and 500 + 500 of spike pre-training, also fixed
    d5 = {**d4, "gate_magnitude": 2.0, "gate_gradient": True, "pretrain": 500, "pretrain_ramp": 500}
    assert recipe_settings("default-5", 20_000, 0.01) == recipe_settings("default-5", 5_000, 0.01) == d5
    assert {k: recipe_settings("default-5", 1_000, 0.01)[k] for k in ("pretrain", "pretrain_ramp")} == \
        {"pretrain": 100, "pretrain_ramp": 100}
    short = recipe_settings("default-4", 1_000, 0.01)  # a short try still leaves every phase, as default-3 did
    assert {k: short[k] for k in ("pretrain", "pretrain_ramp", "alpha_hold", "alpha_anneal", "c_ramp")} == \
        {"pretrain": 400, "pretrain_ramp": 200, "alpha_hold": 400, "alpha_anneal": 300, "c_ramp": 1_000}
    # at alpha 0.05 and above the term's target is the prior's alpha of each iteration
    assert recipe_settings("default", 20_000, 0.2)["rate_target"] is None
    assert recipe_settings("default-3", 2_000, 0.01)["pretrain"] == 800
    assert recipe_settings("default", 20_000, 0.1)["alpha_start"] is None  # nothing to anneal from
    # a run's config: the recipe's values for the settings not given, the given ones as given; the paper's
    # recipe is TrainConfig's own defaults (what old checkpoints mean)
    settings = dict(data="fmnist", dim=8, alpha=0.01, iterations=20_000)
    assert resolve("paper", **settings) == TrainConfig(**settings)
    assert resolve("default-1", **settings) == TrainConfig(**settings, **d)
    given = dict(settings, pretrain=5, centre=True)
    assert resolve("default-1", **given) == TrainConfig(**{**d, **given})


def test_experiment_points_take_the_recipe_then_the_explicit_settings():
    from vsc_cli.pipelines import experiment as E

    points = E.grid_points("dims", "fmnist", dims=(8,), models=("vae", "vsc:0.01"),
                           options={"iterations": 100, "recipe": "default", "pretrain": 7})
    vae, vsc = (E.point_config(p) for p in points)
    # the VAE has no spike: the recipe does not apply (the paper's, i.e. TrainConfig's defaults), nor pretrain
    assert vae == TrainConfig(data="fmnist", model="vae", dim=8, alpha=1.0, iterations=100)
    assert vsc.spike == "sigmoid" and vsc.pretrain == 7 and vsc.alpha_anneal == 30 and vsc.iterations == 100
    paper = E.point_config(E.grid_points("alpha", "fmnist", options={"iterations": 100})[0])
    assert paper.spike == "min" and paper.pretrain == 0 and paper.alpha_start is None


def test_train_uses_the_default_recipe_unless_paper(shared_data, tmp_path):
    from vsc_cli.trainers.checkpoint import load_checkpoint

    base = ["train", "--data", "fmnist", "--data-dir", shared_data, "--dim", 4, "--alpha", 0.01, "--iterations", 10,
            "--train-size", 300, "--test-size", 50, "--batch-size", 50, "--quiet"]
    assert run(*base, "--out", tmp_path / "d").exit_code == 0
    cfg = load_checkpoint(tmp_path / "d")["config"]
    assert (cfg["spike"], cfg["pretrain"], cfg["pretrain_ramp"], cfg["alpha_start"], cfg["alpha_hold"],
            cfg["alpha_anneal"], cfg["rate_weight"], cfg["rate_target"], cfg["centre"]) == \
        ("sigmoid", 4, 2, 0.1, 4, 3, 3.0, 0.05, True)  # default-4's, at a tenth of its 5,000 iterations
    # the decoder's log-variance started at the data's (a number once training starts), c rising over the run
    assert cfg["c_ramp"] == 10 and isinstance(cfg["logvar_init"], float)
    assert run(*base, "--recipe", "default-1", "--out", tmp_path / "d1").exit_code == 0
    cfg1 = load_checkpoint(tmp_path / "d1")["config"]
    assert cfg1 == {**cfg, "rate_weight": 0.0, "rate_target": None, "centre": False, "c_ramp": None,
                    "logvar_init": None}
    for bad, message in ((["--paper", "--recipe", "default-1"], "--paper is --recipe paper"),
                         (["--recipe", "paper", "--pretrain", 3], "cannot be combined with --pretrain"),
                         (["--recipe", "paper", "--resume", tmp_path / "d"], "drop --paper / --recipe")):
        result = run(*base, *bad)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert run(*base, "--paper", "--out", tmp_path / "p").exit_code == 0
    cfg = load_checkpoint(tmp_path / "p")["config"]
    assert (cfg["spike"], cfg["pretrain"], cfg["alpha_start"], cfg["prior"]) == ("min", 0, None, "spike-slab")
    result = run(*base, "--pretrain", 3, "--out", tmp_path / "o")  # one setting given: the rest from the recipe
    assert result.exit_code == 0, result.output
    cfg = load_checkpoint(tmp_path / "o")["config"]
    assert cfg["pretrain"] == 3 and cfg["spike"] == "sigmoid"


def test_the_recipes_page_shows_the_table_of_recipes():
    """docs/recipes.md's table of recipes is generated from RECIPES (python docs/make_option_table.py --write), between
    its markers, so that the page cannot drift from what `vsc train --recipe` does."""
    from vsc_cli.trainers.recipes import RECIPES, recipe_table

    table = recipe_table()
    assert all(f"| {r.name}" in table for r in RECIPES)
    page = (ROOT / "docs" / "recipes.md").read_text()
    assert "<!-- recipes:start" in page and "<!-- recipes:end -->" in page
    assert table in page.split("<!-- recipes:start", 1)[1].split("<!-- recipes:end -->", 1)[0]
