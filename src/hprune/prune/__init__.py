"""Pruning: remove a plan's units from a model, reversibly (analysis) or for good (`prune_`)."""
