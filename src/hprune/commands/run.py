"""`hprune run MODEL --ratio R [--out RUN_DIR] [--recipe NAME_OR_FILE] [--quant BACKEND] [--set k=v ...]`.

The whole job: analysis -> plan (HPP) -> prune -> distill (PWP) -> quantize ->
generate -> evaluate -> report. Re-run the same command to resume a run that
was stopped; `hprune run --status RUN_DIR` shows where it is;
`hprune run [MODEL] --show-recipe [--recipe NAME]` checks a recipe as a run would and prints every
setting the run would use.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hprune.core.errors import HpruneError
from hprune.core.progress import quiet_library_bars

# Commands that write check --out before they run (cli.check_outputs); --out here is a run folder.
OUTPUTS = {"--out": "folder"}


def add_arguments(parser) -> None:
    parser.add_argument("model", nargs="?", help="shapes-sd3, shapes-flux, or a diffusers SD3/SD3.5/FLUX pipeline folder")
    parser.add_argument("--ratio", type=float, default=0.2, help="share of the transformer's parameters to remove")
    parser.add_argument("--out", help="run folder (default: runs/MODEL-RATIO); re-run the same command to resume")
    parser.add_argument("--recipe", default=None,
                        help="a shipped recipe name (shapes-cpu, shapes-full, sd3.5-large-turbo, sd3.5-medium, "
                             "flux.1-schnell, flux.1-dev) or a .toml file (default: shapes-cpu)")
    parser.add_argument("--quant", default=None, help="4-bit backend (overrides quantize.backend; none to skip)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one recipe setting, e.g. --set distill.steps=400 (repeatable)")
    parser.add_argument("--status", metavar="RUN_DIR", help="print the state of each stage of a run folder and exit")
    parser.add_argument("--show-recipe", action="store_true",
                        help="check the recipe as a run would, print every setting it would use, and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (summary lines only)")


def run(args) -> int:
    from hprune.runs.recipe import load_recipe, with_changes

    if args.status:
        from hprune.runs.runner import status

        print(status(args.status))
        return 0
    recipe = load_recipe(args.recipe, args.set)
    if args.quant is not None:
        recipe = with_changes(recipe, "quantize", backend=args.quant)
    if args.show_recipe:
        print(_shown_recipe(args, recipe), end="")
        _say_caution(recipe.quantize.backend)
        return 0
    ctx = prepare(args, recipe)
    if args.no_progress:
        quiet_library_bars()
    from hprune.runs.runner import run_stages, start

    start(ctx)
    print(f"run of {ctx.model} at ratio {ctx.ratio:g} in {ctx.layout.root} (recipe {recipe.name}, device {ctx.device})")
    _say_caution(ctx.recipe.quantize.backend, ctx.layout)
    run_stages(ctx)
    print(f"compressed model: {ctx.layout.model} (load with hprune.load_pipeline); report: {ctx.layout.report_html}")
    return 0


def prepare(args, recipe):
    """Every check that can fail before anything is written; returns the run's context."""
    from hprune.runs.context import RunContext
    from hprune.folders.run_layout import RunLayout

    if not args.model:
        raise HpruneError("name a MODEL: hprune run shapes-sd3 --ratio 0.2 (or a diffusers pipeline folder).")
    model = _check_model(args.model)
    ratio, recipe, device = _checked(args, recipe, model)
    out = Path(args.out) if args.out else Path("runs") / f"{Path(model).name}-{ratio:g}"
    return RunContext(model=model, ratio=ratio, recipe=recipe, layout=RunLayout(out), device=device,
                      progress=not args.no_progress)


def _checked(args, recipe, model: str | None = None):
    """(ratio, effective recipe, device) after the run's checks of them; without a model, the
    checks that do not depend on it (--show-recipe without MODEL)."""
    from hprune.planning.plan import check_ratio
    from hprune.runs.runner import model_family

    ratio = check_ratio(args.ratio, "--ratio")
    if recipe.plan.tolerance >= ratio:
        raise HpruneError(f"--ratio {ratio:g} is below plan.tolerance {recipe.plan.tolerance:g}; pass a larger "
                          "--ratio or --set plan.tolerance to less than it.")
    family = recipe.run.family
    if model is not None:
        _check_family(model, recipe)
        recipe, family = _check_inputs(model, recipe), model_family(model)
    device = _device(recipe.run.device)
    _check_quant(recipe.quantize.backend, device)
    return ratio, _with_paper_alpha(recipe, family), device


def _with_paper_alpha(recipe, family: str | None):
    """plan.alpha unset: the paper's value for the family, written into the effective recipe."""
    from hprune.runs.recipe import with_changes
    from hprune.planning.scoring import PAPER_ALPHA

    if recipe.plan.alpha is not None or family not in PAPER_ALPHA:
        return recipe
    return with_changes(recipe, "plan", alpha=PAPER_ALPHA[family])


def _shown_recipe(args, recipe) -> str:
    """--show-recipe: the recipe a run would use, checked as the run checks it."""
    from hprune.runs.recipe import to_toml
    from hprune.planning.scoring import PAPER_ALPHA

    recipe = prepare(args, recipe).recipe if args.model else _checked(args, recipe)[1]
    if recipe.plan.alpha is not None:
        return to_toml(recipe)
    paper = ", ".join(f"{family} {alpha:g}" for family, alpha in PAPER_ALPHA.items())
    note = f"# plan.alpha: the paper's value for the model's family ({paper}); name a MODEL to see it.\n"
    return note + to_toml(recipe)


def _check_model(model: str) -> str:
    from hprune.folders.paths import pipeline_folder
    from hprune.toy.pipeline import SHIPPED

    if model not in SHIPPED and pipeline_folder(model) is None:
        raise HpruneError(f"{model} is neither a shipped teacher ({', '.join(SHIPPED)}) nor a diffusers pipeline "
                          "folder (one with model_index.json); pass one of those.")
    return model if model in SHIPPED else str(Path(model))


def _check_family(model: str, recipe) -> None:
    from hprune.runs.runner import model_family

    family = model_family(model)
    if recipe.run.family and recipe.run.family != family:
        raise HpruneError(f"recipe '{recipe.name}' is made for {recipe.run.family} models and {model} is a {family} "
                          f"model; pick a {family} recipe (hprune run --help lists them).")


def _check_inputs(model: str, recipe):
    """Real pipelines need a metric with local weights and prompts (the shipped set by default)."""
    from hprune.runs.prompts import DEFAULT_EVAL_PROMPTS, DEFAULT_PROMPTS, read_prompts
    from hprune.runs.recipe import with_changes
    from hprune.toy.pipeline import SHIPPED

    if recipe.evaluate.metric:  # the last stage's metric, checked before the hours before it
        from hprune.metrics import check_spec

        check_spec(recipe.evaluate.metric, "evaluate.metric")
    if model in SHIPPED:
        _check_data(recipe.data.source, shapes=True)
        return recipe
    if recipe.evaluate.metric == "shapes":
        raise HpruneError(f"{model} is a real pipeline: the shapes metric only scores the shapes testbed; set "
                          "evaluate.metric to a metric with local weights (clip:/path, hps:/path) or leave it unset.")
    if recipe.analysis.metric == "shapes":
        raise HpruneError(f"{model} is a real pipeline: the shapes metric only scores the shapes testbed; pass a metric "
                          "with local weights, e.g. --set analysis.metric=clip:/path/to/clip-vit (or hps:/path).")
    prompts = recipe.analysis.prompts or str(DEFAULT_PROMPTS)
    read_prompts(prompts)
    recipe = with_changes(recipe, "analysis", prompts=prompts, split=None)
    recipe = with_changes(recipe, "evaluate", prompts=recipe.evaluate.prompts or str(DEFAULT_EVAL_PROMPTS))
    read_prompts(recipe.evaluate.prompts)
    _check_data(recipe.data.source)
    return recipe


def _check_data(source: str, shapes: bool = False) -> None:
    if source.endswith(".safetensors"):
        if not Path(source).is_file():
            raise HpruneError(f"data.source {source} does not exist; pass a cache written by an earlier run.")
        return
    if source == "none" or source.startswith(("teacher", "shapes")):
        if source.startswith("shapes") and not shapes:
            raise HpruneError("data.source shapes:N only fits the shapes teachers; for a real pipeline use "
                              "teacher:N (the teacher's own samples) or an image folder with captions.")
        return
    from hprune.distill.sources import check_caption_folder

    check_caption_folder(Path(source))


def _device(wanted: str) -> str:
    import torch

    if wanted == "cuda" and not torch.cuda.is_available():
        raise HpruneError("this recipe needs a CUDA GPU (run.device = cuda) and none is visible; run it on a GPU "
                          "machine, or pick a CPU recipe such as shapes-cpu.")
    if wanted not in ("auto", "cuda", "cpu"):
        raise HpruneError(f"run.device must be auto, cuda or cpu, got '{wanted}'.")
    return "cuda" if wanted != "cpu" and torch.cuda.is_available() else "cpu"


def _check_quant(backend: str, device: str) -> None:
    if backend == "none":
        return
    from hprune.quant.names import BACKEND_NAMES

    if backend not in BACKEND_NAMES:
        raise HpruneError(f"--quant {backend} is not a backend; choose none or one of {', '.join(BACKEND_NAMES)}.")
    from hprune.quant import get_backend

    import torch

    try:
        get_backend(backend).check(device=torch.device(device))
    except HpruneError as err:  # its fix names `hprune quantize --backend`; here that is --quant
        raise HpruneError(str(err).replace("--backend", "--quant (quantize.backend)")) from None


def _say_caution(backend: str, layout=None) -> None:
    """The quantize backend's caution on stderr, once the run's checks passed and while its quantize
    stage is still to run (not again on a resume after it)."""
    from hprune.quant import get_backend
    from hprune.runs.runner import is_done

    if backend == "none" or (layout is not None and is_done(layout, "quantize")):
        return
    caution = get_backend(backend).caution
    if caution:
        print(f"note: {caution}", file=sys.stderr)
