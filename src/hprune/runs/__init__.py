"""`hprune run`: one resumable job from a model to a compressed model and a report.

The run folder's layout is declared in `hprune.folders.run_layout`; the settings in
`hprune.runs.recipe`; the stages in `hprune.runs.stages`; the driver that skips
finished stages in `hprune.runs.runner`.
"""
