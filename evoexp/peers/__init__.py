"""Other SNN libraries (snnTorch, SpikingJelly, Norse): their surrogate names, networks and documented formulas."""
