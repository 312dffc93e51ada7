"""evoexp's Hydra configs, shipped inside the package (``pkg://evoexp.conf``) so an installed ``evoexp`` finds them."""
