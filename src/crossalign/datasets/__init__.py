"""Built-in data sets that carry knowledge of their own (`scenes/`: generator, hard negatives,
QA, caption parser, built-in tasks). Generic rooms read manifests; only this package knows scenes."""
