"""Running one experiment's code: the runner seam, the box, the clock, the trusted evaluation."""
