"""evoexp's Optuna sweeper for Hydra: ``hydra/sweeper=evoexp_optuna`` (shipped in the evoexp wheel).

Hydra imports every public module of the ``hydra_plugins`` namespace package at start-up (plugin discovery), so the
public modules here (:mod:`.config`, :mod:`.sweeper`) import only Hydra and OmegaConf; Optuna is imported by the
private modules (:mod:`._space`, :mod:`._search`, which discovery skips) when a search starts.
"""
