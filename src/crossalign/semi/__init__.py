"""Few pairs, many unpaired items: semi-supervised and unpaired alignment.

Library modules (numpy / torch / POT only): `ot` (Sinkhorn pseudo-targets), `selftrain` (mutual
nearest neighbours), `losses` (soft contrastive and neighbourhood terms), `gw` (Gromov-Wasserstein
matching + linear map), `asif` (relative representations), `data` (unpaired items, paired fractions).
`task` and `api` sit on the trainer (imported lazily; nothing here imports them eagerly).
"""
