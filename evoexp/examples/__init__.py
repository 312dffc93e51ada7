"""Example networks of the field's libraries, as a researcher writes them, shipped for the model presets.

``model=snntorch_conv`` (:mod:`evoexp.examples.snntorch_conv`), ``model=spikingjelly_mlp``
(:mod:`evoexp.examples.spikingjelly_mlp`) and ``model=norse_lif`` (:mod:`evoexp.examples.norse_lif`) name these
classes by ``_target_``; :mod:`evoexp.examples.tonic_nmnist` wraps a Tonic-format dataset on local disk. Each module
imports its library (the ``peers`` extra) and is imported only when a config names it. Nothing in evoexp imports
this package. docs/guides/your-network.md shows how they run and what they reach.
"""
