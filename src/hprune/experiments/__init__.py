"""The experiment harness (the paper's ablation tables, `hprune ablate`) and the tour
(`python -m hprune.experiments.demo`). Nothing in the library imports it."""
