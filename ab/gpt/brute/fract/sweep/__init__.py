"""The evaluation sweep above the trials: the driver, run records, order, successive halving, the plan
and its calibration, and the closed generate-evaluate loop."""
