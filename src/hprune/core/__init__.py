"""Helpers every stage uses: errors, files written atomically, progress, a model's history
(provenance), CUDA settings, optional extras. Imports nothing else from hprune."""
