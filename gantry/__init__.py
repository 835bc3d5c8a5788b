"""The composition root: the `gantry` command line and `gantry doctor`."""
