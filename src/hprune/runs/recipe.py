"""Recipes: every setting of `hprune run`, in one TOML file.

A recipe has one table per stage; each table is a config dataclass whose
defaults are the library's (declared once, in that dataclass):

    [analysis]  hprune.analysis.profile.ProfileConfig     the contribution analysis
    [plan]      PlanSettings                     HPP's alpha and r_thres
    [distill]   hprune.distill.DistillConfig     the training loop
    [data]      DataSettings                     what the student learns from
    [quantize]  QuantSettings                    the 4-bit backend
    [evaluate]  EvalSettings                     the images the report scores
    [run]       RunSettings                      which models and machines it fits

A named recipe (`src/hprune/runs/recipes/NAME.toml`, or any TOML file) sets
only what differs from those defaults; `--set section.key=value` overrides it;
the effective recipe, every key written out, is saved as RUN_DIR/recipe.toml
with its source's name in a top-level `name` key (so passing it back keeps the
name). Keys whose value is "none" are written as comments; `hprune run` fills
`plan.alpha` with the paper's value for the model's family before it saves the
recipe. Python 3.11's `tomllib` reads the files.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from hprune.core.errors import HpruneError

RECIPES = Path(__file__).parent / "recipes"
DEFAULT_RECIPE = "shapes-cpu"


@dataclass
class PlanSettings:
    """HPP's settings; the ratio comes from `hprune run --ratio`."""

    alpha: float | None = None  # None: the paper's value for the family (SD3 0.55, FLUX 0.01)
    r_thres: float = 0.25  # whole blocks up to this ratio, then subcomponents (the paper's 0.25)
    tolerance: float = 0.01  # the removed share lands in [ratio, ratio + tolerance] (matched sizes)

    def __post_init__(self):
        if self.alpha is not None and not math.isfinite(self.alpha):
            raise HpruneError(f"plan.alpha must be a finite number (e.g. 0.55), got {self.alpha}.")
        if not 0 < self.r_thres < 1:
            raise HpruneError(f"plan.r_thres must be between 0 and 1 (e.g. 0.25), got {self.r_thres}.")
        if not 0 <= self.tolerance < 1:
            raise HpruneError(f"plan.tolerance must be at least 0 and below 1 (e.g. 0.01), got {self.tolerance}.")


@dataclass
class DataSettings:
    """Distillation data: `shapes:N` (renders of the testbed's training split), `teacher:N`
    (data-free: the teacher's own samples from the calibration prompts), or an image folder
    with `metadata.jsonl` (`file_name`, `text`; Hugging Face imagefolder)."""

    source: str = "teacher:256"
    resolution: int = 1024  # image side for an image folder and for teacher samples
    sgdistill_above: float | None = None  # SGDistill when the ratio exceeds this (the paper: r_thres 0.25)

    def __post_init__(self):
        kind, _, count = self.source.partition(":")
        if kind in ("shapes", "teacher") and count and not (count.isdigit() and int(count) > 0):
            raise HpruneError(f"data.source {self.source} needs a positive number of examples after the colon, "
                              f"e.g. {kind}:256.")
        if self.resolution < 16 or self.resolution % 16:
            raise HpruneError(f"data.resolution must be a multiple of 16 (e.g. 1024), got {self.resolution}.")


@dataclass
class QuantSettings:
    backend: str = "none"  # none | bnb-nf4 | torchao-int4 | w4fp8 | ... (`hprune quantize --help`)
    rounding: str = "auto"  # auto: the backend's default (w4fp8: gptq, on the analysis prompts) | gptq | nearest

    def __post_init__(self):
        if self.rounding not in ("auto", "gptq", "nearest"):
            raise HpruneError(f"quantize.rounding must be auto, gptq or nearest, got {self.rounding!r}.")


@dataclass
class EvalSettings:
    """The images the report scores: a shapes split's evaluation set, or a prompts file."""

    split: str = "test"
    per_category: int = 8  # shapes: images per category
    prompts: str | None = None  # real models: a text file, one prompt a line
    n_prompts: int = 64
    steps: int | None = None  # None: the pipeline's default
    batch_size: int = 32
    metric: str | None = None  # None: the analysis metric
    samples: int = 8  # prompts in the report's sample grid

    def __post_init__(self):
        from hprune.toy.splits import SPLITS

        small = [k for k in ("per_category", "n_prompts", "batch_size", "samples") if getattr(self, k) < 1]
        if small or (self.steps is not None and self.steps < 1):
            names = ", ".join(f"evaluate.{k}" for k in small or ["steps"])
            raise HpruneError(f"{names} must be at least 1; set it in the recipe or with --set {names.split(',')[0]}=VALUE.")
        if self.split not in SPLITS:
            raise HpruneError(f"evaluate.split must be one of {', '.join(SPLITS)}, got '{self.split}'.")


@dataclass
class RunSettings:
    family: str | None = None  # sd3 | flux; a recipe made for one family refuses the other
    device: str = "auto"  # auto | cuda (the recipe needs a GPU) | cpu


def _sections() -> dict[str, type]:
    from hprune.distill.config import DistillConfig
    from hprune.analysis.profile import ProfileConfig

    return {"analysis": ProfileConfig, "plan": PlanSettings, "distill": DistillConfig, "data": DataSettings,
            "quantize": QuantSettings, "evaluate": EvalSettings, "run": RunSettings}


@dataclass
class Recipe:
    name: str
    analysis: object
    plan: PlanSettings
    distill: object
    data: DataSettings
    quantize: QuantSettings
    evaluate: EvalSettings
    run: RunSettings

    def tables(self) -> dict[str, dict]:
        return {name: asdict(getattr(self, name)) for name in _sections()}


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.toml"))


def load_recipe(name_or_file: str | None = None, sets: list[str] = ()) -> Recipe:
    """The recipe `name_or_file` (a shipped name or a TOML path; None: DEFAULT_RECIPE) with
    `sets` ("section.key=value", value in TOML syntax or a bare string) applied.
    Raises HpruneError naming an unknown recipe, table or key (with the closest key)."""
    path = _recipe_path(name_or_file or DEFAULT_RECIPE)
    values = _read(path)
    name = _take_name(values, path)
    for item in sets:
        section, key, value = _parse_set(item)
        values.setdefault(section, {})[key] = value
    return _build(name, values)


def _take_name(values: dict, path: Path) -> str:
    """The file's own `name` key (an effective recipe.toml keeps its source recipe's name), else
    its file name (flux.1-dev.toml: flux.1-dev)."""
    name = values.pop("name", path.name.removesuffix(".toml"))
    if not isinstance(name, str) or not name:
        raise HpruneError(f'recipe {path}: name must be a non-empty string, e.g. name = "shapes-cpu".')
    return name


def _recipe_path(name: str) -> Path:
    path = Path(name)
    if path.suffix == ".toml":
        if not path.is_file():
            raise HpruneError(f"recipe file {path} does not exist; pass a .toml file or one of: {', '.join(recipe_names())}.")
        return path
    shipped = RECIPES / f"{name}.toml"
    if not shipped.is_file():
        raise HpruneError(f"no recipe named '{name}'; choose one of {', '.join(recipe_names())} or pass a .toml file.")
    return shipped


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise HpruneError(f"recipe {path} is not valid TOML ({err}); fix that line.")
    except UnicodeDecodeError:
        raise HpruneError(f"recipe {path} is not UTF-8 text; save it as UTF-8 TOML.") from None
    except IsADirectoryError:
        raise HpruneError(f"recipe {path} is a folder; pass a .toml file or a shipped recipe name.") from None


def _parse_set(item: str) -> tuple[str, str, object]:
    key, sep, text = item.partition("=")
    section, dot, field = key.strip().partition(".")
    if not sep or not dot:
        raise HpruneError(f"--set takes section.key=value (e.g. distill.steps=400), got '{item}'.")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare string: --set data.source=teacher:64
    return section, field, value


def _build(name: str, values: dict) -> Recipe:
    sections = _sections()
    for section, table in values.items():
        if section not in sections:
            raise HpruneError(f"recipe table [{section}] does not exist{_closest(section, sections)}; "
                              f"tables: {', '.join(sections)}.")
        if not isinstance(table, dict):
            raise HpruneError(f"recipe key '{section}' must be a table [{section}] of settings.")
    built = {s: _section(s, cls, values.get(s, {})) for s, cls in sections.items()}
    return Recipe(name=name, **built)


def _section(section: str, cls: type, table: dict):
    known = {f.name: f for f in fields(cls)}
    for key, value in table.items():
        if key not in known:
            raise HpruneError(f"recipe key '{section}.{key}' does not exist"
                              f"{_closest(key, known, prefix=section + '.')}.")
        _check_type(f"{section}.{key}", value, getattr(cls, key, None), known[key].type)
    try:
        return cls(**table)
    except HpruneError as err:  # the library's config classes name the stage commands' flags
        raise HpruneError(_as_recipe_keys(str(err), section, known)) from None


_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")


def _as_recipe_keys(message: str, section: str, keys) -> str:
    """`message` with each flag of a key of `section` (--batch-size) named as the recipe key
    (distill.batch_size), and how to set that key."""
    named = []

    def as_key(match: re.Match) -> str:
        key = match.group(1).replace("-", "_")
        if key not in keys:
            return match.group(0)
        named.append(f"{section}.{key}")
        return named[-1]

    text = _FLAG.sub(as_key, message)
    if not named:
        return text
    them = "it" if len(set(named)) == 1 else "them"
    return f"{text.rstrip('.')}; set {them} in the recipe or with --set {named[0]}=VALUE."


_KINDS = {"bool": bool, "int": int, "float": float, "str": str}
_KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _check_type(key: str, value, default, annotation) -> None:
    """Refuse a value of the wrong type in one sentence. A key whose default is None (unset:
    the family's or pipeline's value) is checked against its annotation (`float | None`),
    and a whole number it takes must be at least 0."""
    expected = type(default) if default is not None else _annotated_kind(annotation)
    if expected is None:
        return
    kinds = (int, float) if expected is float else expected
    if isinstance(value, bool) != (expected is bool) or not isinstance(value, kinds):
        like = f" (like {_toml_value(default)})" if default is not None else ""
        raise HpruneError(f"recipe key '{key}' takes {_KIND_WORDS[expected]}{like}, got {_toml_value(value)}.")
    if default is None and expected in (int, float) and value < 0:
        raise HpruneError(f"recipe key '{key}' must be 0 or more when set, got {value}.")


def _annotated_kind(annotation) -> type | None:
    """bool, int, float or str from a field annotation such as 'int | None' (a string under
    `from __future__ import annotations`); None when it names no single one of them."""
    names = [part.strip() for part in str(annotation).split("|") if part.strip() != "None"]
    return _KINDS.get(names[0]) if len(names) == 1 else None


def _closest(word: str, options, prefix: str = "") -> str:
    match = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{prefix}{match[0]}'?)" if match else ""


def with_changes(recipe: Recipe, section: str, **changes) -> Recipe:
    """A copy of `recipe` with `changes` in one table (the CLI's own flags)."""
    return replace(recipe, **{section: replace(getattr(recipe, section), **changes)})


def to_toml(recipe: Recipe) -> str:
    """Every setting, one table per stage; None values as comments (TOML has no null)."""
    lines = [f"# hprune recipe '{recipe.name}': the effective settings of this run.",
             "# Re-run with `hprune run MODEL --recipe THIS_FILE`; see docs/run.md for each key.",
             f"name = {_toml_value(recipe.name)}"]
    for section, table in recipe.tables().items():
        lines += ["", f"[{section}]"]
        lines += [toml_line(key, value) for key, value in table.items()]
    return "\n".join(lines) + "\n"


def toml_line(key: str, value) -> str:
    """One setting as to_toml writes it: `key = value`, or a comment for None."""
    return f"# {key} = (none)" if value is None else f"{key} = {_toml_value(value)}"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
