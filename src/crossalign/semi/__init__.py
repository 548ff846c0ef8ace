"""Few pairs, many unpaired items: semi-supervised and unpaired alignment.

Library modules (numpy / torch / POT only): `ot` (Sinkhorn pseudo-targets), `selftrain` (mutual
nearest neighbours), `losses` (soft contrastive and neighbourhood terms), `gw` (Gromov-Wasserstein
matching + linear map), `asif` (relative representations), `data` (unpaired items, paired fractions).
Training with unpaired items is `train.semi_task.SemiAlignmentTask` (machinery) run by the
`recipes.semi` program; nothing in this package imports the trainer.
"""
